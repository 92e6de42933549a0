"""Preference data with groups: feature pairs for fast experiments, text datasets for trl.

Columns of a text preference dataset (one row per pair):

* ``prompt``, ``chosen``, ``rejected``: as in trl (``prompt`` optional);
* ``group``: int in ``[0, K)``, the sensitive attribute of the pair;
* ``orientation``: +1 when ``chosen`` is the canonical first response of the fairness event
  (favourable decision, stereotyped answer, response of the group's author), -1 when
  ``rejected`` is; optional, default +1;
* ``label``: the declared outcome Y for equalized odds (int), optional;
* ``prompt_cf``, ``chosen_cf``, ``rejected_cf``: the counterfactual twin (the same pair with the
  attribute swapped in prompt and responses), needed for the counterfactual constraint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from kernelkit.validation import check_finite, check_floating, check_ndim, check_tensor

__all__ = [
    "FeaturePairs",
    "SyntheticCandidates",
    "load_bbq",
    "load_preferences",
    "synthetic_candidates",
    "synthetic_preferences",
    "synthetic_text_preferences",
]

GROUP_COLUMN = "group"
ORIENTATION_COLUMN = "orientation"
LABEL_COLUMN = "label"
TWIN_COLUMNS = ("prompt_cf", "chosen_cf", "rejected_cf")


@dataclass(frozen=True)
class FeaturePairs:
    """Preference pairs as feature vectors (the plain-torch path).

    ``chosen``/``rejected``: (n, d) float; ``group``: (n,) int; ``orientation``: (n,) +-1;
    ``label``: (n,) int outcome for EO; ``chosen_twin``/``rejected_twin``: (n, d) counterfactual
    twins; ``clean_preference``: (n,) bool, whether ``chosen`` is preferred under the unbiased
    labelling (for accuracy against clean labels). Optional fields may be ``None``.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    group: torch.Tensor
    orientation: torch.Tensor
    label: torch.Tensor | None = None
    chosen_twin: torch.Tensor | None = None
    rejected_twin: torch.Tensor | None = None
    clean_preference: torch.Tensor | None = None

    def __post_init__(self) -> None:
        check_floating("chosen", self.chosen)
        check_ndim("chosen", self.chosen, 2)
        n, d = self.chosen.shape
        check_floating("rejected", self.rejected)
        if self.rejected.shape != (n, d):
            raise ValueError(
                f"rejected must have shape {(n, d)} like chosen, got {tuple(self.rejected.shape)}"
            )
        # A NaN feature gives a NaN reward, which every metric would then average in.
        check_finite("chosen", self.chosen)
        check_finite("rejected", self.rejected)
        for name in ("group", "orientation", "label", "clean_preference"):
            value = getattr(self, name)
            if value is None and name in ("group", "orientation"):
                raise TypeError(f"{name} must be a torch.Tensor, got NoneType")
            if value is None:
                continue
            check_tensor(name, value)
            if value.shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},), one entry per pair, got {tuple(value.shape)}"
                )
            if name != "clean_preference" and (
                value.is_floating_point() or value.dtype == torch.bool
            ):
                raise TypeError(f"{name} must be an integer tensor, got {value.dtype}")
        if self.group.numel() and int(self.group.min()) < 0:
            raise ValueError(f"group values must be >= 0, got minimum {int(self.group.min())}")
        if not bool(((self.orientation == 1) | (self.orientation == -1)).all()):
            raise ValueError("orientation must contain only +1 and -1")
        if (self.chosen_twin is None) != (self.rejected_twin is None):
            raise ValueError("chosen_twin and rejected_twin must be given together or not at all")
        for name in ("chosen_twin", "rejected_twin"):
            value = getattr(self, name)
            if value is not None and tuple(value.shape) != (n, d):
                raise ValueError(
                    f"{name} must have shape {(n, d)} like chosen, got {tuple(value.shape)}"
                )
            if value is not None:
                check_finite(name, value)

    def __len__(self) -> int:
        return self.chosen.shape[0]

    @property
    def num_features(self) -> int:
        return self.chosen.shape[1]

    @property
    def has_twins(self) -> bool:
        return self.chosen_twin is not None

    def subset(self, index: torch.Tensor | slice) -> FeaturePairs:
        """The pairs at ``index`` (a slice, an index tensor or a bool mask)."""
        return replace(
            self,
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[index]
                for f in fields(self)
            },
        )

    def to(self, device: str | torch.device) -> FeaturePairs:
        return replace(
            self,
            **{
                f.name: None if getattr(self, f.name) is None else getattr(self, f.name).to(device)
                for f in fields(self)
            },
        )


@dataclass(frozen=True)
class SyntheticCandidates:
    """Candidate responses per prompt for the policy view: features (P, C, d), groups (P, C), true utility (P, C)."""

    features: torch.Tensor
    group: torch.Tensor
    utility: torch.Tensor


QUALITY_DIM = 8
PROXY_DIM = 3


def _check_probability(name: str, value: float, *, open_interval: bool = True) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if open_interval and not 0.0 < value < 1.0:
        raise ValueError(f"{name} must lie strictly between 0 and 1, got {value}")


def _responses(
    count: int,
    group: torch.Tensor,
    generator: torch.Generator,
    *,
    base_rate_shift: float,
    utility_scale: float,
    proxy_strength: float,
    proxy_noise: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features ``[quality (8), proxies (3), group]``, the true utility and the proxy noise."""
    direction = torch.ones(QUALITY_DIM) / math.sqrt(QUALITY_DIM)
    quality = (
        torch.randn(count, QUALITY_DIM, generator=generator)
        + base_rate_shift * group[:, None] * direction
    )
    noise = proxy_noise * torch.randn(count, PROXY_DIM, generator=generator)
    proxies = proxy_strength * group[:, None] + noise
    features = torch.cat([quality, proxies, group[:, None]], dim=1)
    utility = utility_scale * quality @ direction
    return features, utility, noise


def _swap_group(features: torch.Tensor, group: torch.Tensor, proxy_strength: float) -> torch.Tensor:
    """The same responses with the binary attribute swapped: proxies move with it, quality stays."""
    swapped = features.clone()
    delta = (1.0 - 2.0 * group)[:, None]
    swapped[:, QUALITY_DIM : QUALITY_DIM + PROXY_DIM] += proxy_strength * delta
    swapped[:, -1] = 1.0 - group
    return swapped


def synthetic_preferences(
    num_pairs: int,
    *,
    seed: int = 0,
    annotator_skew: float = 1.0,
    base_rate_shift: float = 0.0,
    protected_share: float = 0.3,
    utility_scale: float = 2.0,
    proxy_strength: float = 0.8,
    proxy_noise: float = 0.6,
) -> FeaturePairs:
    """Cross-group pairs ``(target, reference)`` with a planted annotator bias against group 1.

    Each response has 8 quality features, 3 proxy features that leak its author's group
    (``proxy_strength * g + N(0, proxy_noise^2)``, so dropping ``g`` does not remove it) and ``g``
    itself.  The target's author is in group 1 with probability ``protected_share``; the reference
    response is written by an author of the other group.  With ``U ~ Uniform(0, 1)`` shared by both
    labellings, annotators prefer the target when ``U < sigmoid(u_t - u_r - skew (g_t - g_r))``
    and the clean labelling when ``U < sigmoid(u_t - u_r)``.  ``base_rate_shift`` moves group 1's
    quality by that many standard deviations of utility (a genuine difference, not a bias).

    The canonical event is "the target response wins", the pair's group is the target's group,
    the EO outcome is the clean label, and the twin swaps the target author's group.
    """
    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs must be an int >= 1, got {num_pairs!r}")
    _check_probability("protected_share", protected_share)
    for name, value in (("annotator_skew", annotator_skew), ("base_rate_shift", base_rate_shift)):
        if not isinstance(value, int | float) or not math.isfinite(value):
            raise TypeError(f"{name} must be a finite number, got {value!r}")
    generator = torch.Generator().manual_seed(seed)
    options = dict(
        base_rate_shift=base_rate_shift,
        utility_scale=utility_scale,
        proxy_strength=proxy_strength,
        proxy_noise=proxy_noise,
    )
    target_group = (torch.rand(num_pairs, generator=generator) < protected_share).float()
    reference_group = 1.0 - target_group
    target, target_utility, _ = _responses(num_pairs, target_group, generator, **options)
    reference, reference_utility, _ = _responses(num_pairs, reference_group, generator, **options)
    uniform = torch.rand(num_pairs, generator=generator)
    utility_gap = target_utility - reference_utility
    target_wins = uniform < torch.sigmoid(
        utility_gap - annotator_skew * (target_group - reference_group)
    )
    target_wins_clean = uniform < torch.sigmoid(utility_gap)

    chosen = torch.where(target_wins[:, None], target, reference)
    rejected = torch.where(target_wins[:, None], reference, target)
    target_twin = _swap_group(target, target_group, proxy_strength)
    chosen_twin = torch.where(target_wins[:, None], target_twin, reference)
    rejected_twin = torch.where(target_wins[:, None], reference, target_twin)
    return FeaturePairs(
        chosen=chosen,
        rejected=rejected,
        group=target_group.long(),
        orientation=torch.where(target_wins, 1, -1),
        label=target_wins_clean.long(),
        chosen_twin=chosen_twin,
        rejected_twin=rejected_twin,
        clean_preference=target_wins == target_wins_clean,
    )


def synthetic_candidates(
    num_prompts: int,
    num_candidates: int = 8,
    *,
    seed: int = 0,
    base_rate_shift: float = 0.0,
    protected_share: float = 0.3,
    utility_scale: float = 2.0,
    proxy_strength: float = 0.8,
    proxy_noise: float = 0.6,
) -> SyntheticCandidates:
    """Candidate responses per prompt from the same population as :func:`synthetic_preferences`."""
    if isinstance(num_prompts, bool) or not isinstance(num_prompts, int) or num_prompts < 1:
        raise ValueError(f"num_prompts must be an int >= 1, got {num_prompts!r}")
    if (
        isinstance(num_candidates, bool)
        or not isinstance(num_candidates, int)
        or num_candidates < 2
    ):
        raise ValueError(f"num_candidates must be an int >= 2, got {num_candidates!r}")
    _check_probability("protected_share", protected_share)
    generator = torch.Generator().manual_seed(seed)
    count = num_prompts * num_candidates
    group = (torch.rand(count, generator=generator) < protected_share).float()
    features, utility, _ = _responses(
        count,
        group,
        generator,
        base_rate_shift=base_rate_shift,
        utility_scale=utility_scale,
        proxy_strength=proxy_strength,
        proxy_noise=proxy_noise,
    )
    shape = (num_prompts, num_candidates)
    return SyntheticCandidates(
        features.view(*shape, -1), group.long().view(shape), utility.view(shape)
    )


def synthetic_text_preferences(
    num_pairs: int, *, seed: int = 0, annotator_skew: float = 1.5, protected_share: float = 0.4
):
    """A text version for tiny transformer reward models (a ``datasets.Dataset``).

    Pairs are cross-group like :func:`synthetic_preferences`. Prompt: "Rate the answer: ".
    Responses: an author dialect marker (``x`` for group 0, ``z`` for
    group 1, like a proxy feature) followed by a quality digit 0-9.  Labels come from
    Bradley-Terry on the digit difference with ``annotator_skew`` against group-1 targets; twins
    swap the target's marker.  Columns: prompt, chosen, rejected, group, orientation, label,
    prompt_cf, chosen_cf, rejected_cf.
    """
    from datasets import Dataset

    if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
        raise ValueError(f"num_pairs must be an int >= 1, got {num_pairs!r}")
    _check_probability("protected_share", protected_share)
    generator = torch.Generator().manual_seed(seed)
    target_group = (torch.rand(num_pairs, generator=generator) < protected_share).long()
    reference_group = 1 - target_group
    target_quality = torch.randint(0, 10, (num_pairs,), generator=generator)
    reference_quality = torch.randint(0, 10, (num_pairs,), generator=generator)
    uniform = torch.rand(num_pairs, generator=generator)
    gap = (target_quality - reference_quality).float()
    target_wins = uniform < torch.sigmoid(
        gap - annotator_skew * (target_group - reference_group).float()
    )
    target_wins_clean = uniform < torch.sigmoid(gap)
    markers = "xz"
    rows: dict[str, list] = {
        name: []
        for name in (
            "prompt",
            "chosen",
            "rejected",
            GROUP_COLUMN,
            ORIENTATION_COLUMN,
            LABEL_COLUMN,
            *TWIN_COLUMNS,
        )
    }
    for i in range(num_pairs):
        g, q = int(target_group[i]), int(target_quality[i])
        target = f"{markers[g]}{q}"
        target_twin = f"{markers[1 - g]}{q}"
        reference = f"{markers[int(reference_group[i])]}{int(reference_quality[i])}"
        wins = bool(target_wins[i])
        rows["prompt"].append("Rate the answer: ")
        rows["chosen"].append(target if wins else reference)
        rows["rejected"].append(reference if wins else target)
        rows[GROUP_COLUMN].append(g)
        rows[ORIENTATION_COLUMN].append(1 if wins else -1)
        rows[LABEL_COLUMN].append(int(target_wins_clean[i]))
        rows["prompt_cf"].append("Rate the answer: ")
        rows["chosen_cf"].append(target_twin if wins else reference)
        rows["rejected_cf"].append(reference if wins else target_twin)
    return Dataset.from_dict(rows)


def _validate_preference_columns(columns: list[str], source: str) -> None:
    missing = [c for c in ("chosen", "rejected", GROUP_COLUMN) if c not in columns]
    if missing:
        raise ValueError(
            f"{source} lacks the required column(s) {missing}; it has {sorted(columns)}"
        )
    present_twins = [c for c in TWIN_COLUMNS if c in columns]
    needed_twins = [c for c in ("chosen_cf", "rejected_cf") if c not in columns]
    if present_twins and needed_twins:
        raise ValueError(f"{source} has twin column(s) {present_twins} but lacks {needed_twins}")


def load_preferences(path: str | Path):
    """Load ``prompt, chosen, rejected, group`` (+ orientation, label, twins) from JSONL or a datasets directory."""
    from datasets import Dataset, load_from_disk

    path = Path(path)
    if path.is_dir():
        dataset = load_from_disk(str(path))
        if not isinstance(dataset, Dataset):
            raise ValueError(
                f"{path} holds a {type(dataset).__name__}; expected a single datasets.Dataset (save one split)"
            )
    elif path.is_file():
        rows = []
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{number} is not valid JSON: {err}") from err
        if not rows:
            raise ValueError(f"{path} holds no rows; expected one JSON object per line")
        dataset = Dataset.from_list(rows)
    else:
        raise FileNotFoundError(
            f"path {str(path)!r} is neither a JSONL file nor a datasets directory"
        )
    _validate_preference_columns(dataset.column_names, str(path))
    groups = dataset[GROUP_COLUMN]
    if any(isinstance(g, bool) or not isinstance(g, int) or g < 0 for g in groups):
        raise ValueError(f"{path}: column 'group' must hold ints >= 0")
    if ORIENTATION_COLUMN in dataset.column_names and any(
        o not in (1, -1) for o in dataset[ORIENTATION_COLUMN]
    ):
        raise ValueError(f"{path}: column 'orientation' must hold only +1 and -1")
    return dataset


BBQ_FIELDS = (
    "category",
    "question_polarity",
    "answer_info",
    "additional_metadata",
    "context",
    "question",
    "ans0",
    "ans1",
    "ans2",
    "label",
)
_BBQ_GENDER = {
    **dict.fromkeys(("man", "men", "boy", "boys"), "m"),
    **dict.fromkeys(("woman", "women", "girl", "girls"), "f"),
}


def _bbq_tag(value: object) -> str:
    """A BBQ group tag in one spelling: ``low SES`` = ``lowSES``, ``F-Black`` = ``Black``, ``woman`` = ``F``."""
    tag = str(value).strip().lower().replace(" ", "")
    if tag.startswith(("m-", "f-")):
        tag = tag[2:]
    if tag.startswith("trans"):
        return "trans"
    return _BBQ_GENDER.get(tag, tag)


def _bbq_item(item: object, where: str) -> tuple[list[str], list[tuple[str, str]], int]:
    """Validate one BBQ row; return its answers, ``(text, tag)`` per answer and the gold index."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: a BBQ row must be a JSON object, got {type(item).__name__}")
    missing = [name for name in BBQ_FIELDS if name not in item]
    if missing:
        raise ValueError(f"{where}: BBQ row lacks the field(s) {missing}; it has {sorted(item)}")
    label = item["label"]
    if isinstance(label, bool) or not isinstance(label, int) or label not in (0, 1, 2):
        raise ValueError(f"{where}: BBQ 'label' must be 0, 1 or 2 (the gold answer), got {label!r}")
    if item["question_polarity"] not in ("neg", "nonneg"):
        raise ValueError(
            f"{where}: BBQ 'question_polarity' must be 'neg' or 'nonneg', got {item['question_polarity']!r}"
        )
    info = item["answer_info"]
    keys = ("ans0", "ans1", "ans2")
    if not isinstance(info, dict) or any(
        not isinstance(info.get(key), list) or len(info[key]) != 2 for key in keys
    ):
        raise ValueError(
            f"{where}: BBQ 'answer_info' must map ans0, ans1 and ans2 to [text, group tag], got {info!r}"
        )
    if not isinstance(item["additional_metadata"], dict):
        raise ValueError(f"{where}: BBQ 'additional_metadata' must be an object")
    answers = [item[key] for key in keys]
    if not all(isinstance(a, str) for a in [*answers, item["context"], item["question"]]):
        raise ValueError(f"{where}: BBQ context, question and ans0-ans2 must be strings")
    return answers, [(str(info[key][0]), str(info[key][1])) for key in keys], label


def _bbq_biased_answer(item: dict, tags: list[tuple[str, str]]) -> int | None:
    """Index of the answer a stereotype would pick, or ``None`` when the tags do not say.

    The stereotyped group is found by the answer's group tag (spellings normalised as in BBQ's
    analysis scripts) and, failing that, by the answer's short text (Nationality tags regions).
    """
    stereotyped = item["additional_metadata"].get("stereotyped_groups") or []
    if isinstance(stereotyped, str):
        stereotyped = [stereotyped]
    stereotyped = {_bbq_tag(s) for s in stereotyped}
    known = [i for i, (_, tag) in enumerate(tags) if tag.lower() != "unknown"]
    for key in (lambda i: _bbq_tag(tags[i][1]), lambda i: _bbq_tag(tags[i][0])):
        targets = [i for i in known if key(i) in stereotyped]
        others = [i for i in known if key(i) not in stereotyped]
        if len(targets) == 1 and len(others) == 1:
            return targets[0] if item["question_polarity"] == "neg" else others[0]
    return None


def load_bbq(paths: str | Path | list[str | Path]):
    """BBQ JSONL files (one per category) as preference pairs; returns ``(dataset, categories)``.

    Chosen is the gold answer; rejected is the stereotype-consistent answer when that is wrong,
    else the "unknown" answer. The canonical first response is the stereotype-consistent answer
    (``orientation``), ``group`` is the index of the category in the sorted ``categories``,
    ``label`` is 1 when the stereotype-consistent answer is correct. Items whose answer tags do
    not identify the stereotyped answer are skipped. BBQ has no counterfactual twins.
    Malformed rows (invalid JSON, a missing field, a label outside 0-2, answer info that is not
    ``[text, tag]`` per answer) raise ``ValueError`` naming the file and line.
    """
    from datasets import Dataset

    paths = [paths] if isinstance(paths, str | Path) else list(paths)
    if not paths:
        raise ValueError("paths must name at least one BBQ JSONL file")
    items = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"BBQ file {str(path)!r} does not exist")
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as err:
                    raise ValueError(f"{where} is not valid JSON: {err}") from err
                items.append((item, where, *_bbq_item(item, where)))
    if not items:
        raise ValueError(f"no BBQ rows in {[str(p) for p in paths]}")
    categories = sorted({str(item["category"]) for item, *_ in items})
    rows: dict[str, list] = {
        name: []
        for name in ("prompt", "chosen", "rejected", GROUP_COLUMN, ORIENTATION_COLUMN, LABEL_COLUMN)
    }
    for item, _, answers, tags, gold in items:
        biased = _bbq_biased_answer(item, tags)
        if biased is None:
            continue
        # with the stereotyped and the other answer identified, the third one is "unknown"
        unknown = next(i for i, (_, tag) in enumerate(tags) if tag.lower() == "unknown")
        rejected = unknown if biased == gold else biased
        rows["prompt"].append(f"{item['context']}\n{item['question']}\n")
        rows["chosen"].append(answers[gold])
        rows["rejected"].append(answers[rejected])
        rows[GROUP_COLUMN].append(categories.index(str(item["category"])))
        rows[ORIENTATION_COLUMN].append(1 if biased == gold else -1)
        rows[LABEL_COLUMN].append(int(biased == gold))
    if not rows["prompt"]:
        raise ValueError(
            f"no usable BBQ items in {[str(p) for p in paths]}: none had identifiable stereotyped answers"
        )
    return Dataset.from_dict(rows), categories
