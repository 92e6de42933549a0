"""ProxyGDA as a subclass of trl's ``RewardTrainer``.

What it adds to ``RewardTrainer``:

* it keeps the ``group``, ``orientation`` and ``label`` columns and tokenizes the counterfactual
  twin columns (trl 1.x prunes every column but ``chosen_ids``/``rejected_ids``/``margin``);
* the collator stacks ``[chosen; rejected]`` (and ``[chosen_cf; rejected_cf]`` after them, so
  one forward pass scores the twins) and carries the group tensors;
* the loss is ``BT + sum_j lambda_j g_proxy_j`` on in-batch rewards, and after each micro-batch
  the multipliers ascend on the hard violations, projected onto ``[0, B]``;
* group statistics (counts and hard sums) are all-reduced across processes before rates are
  formed, so multipliers stay identical on every rank under ``accelerate launch``;
* the training sampler interleaves groups so every batch holds each group in proportion;
* every ``fairness_eval_steps`` steps the model is checked on the eval set, and ``train()`` ends
  by loading the best validation-feasible iterate (lowest BT loss among feasible checks).

The trained model is an ordinary ``AutoModelForSequenceClassification`` with ``num_labels=1``.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from torch import nn
from torch.utils.data import Sampler
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import RewardConfig, RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference
from trl.trainer.utils import pad

from faro.constraints import CONSTRAINT_NAMES, Constraint, make_constraint
from faro.data import GROUP_COLUMN, LABEL_COLUMN, ORIENTATION_COLUMN, TWIN_COLUMNS
from faro.lagrangian import ProxyLagrangian
from faro.linear import stratified_order
from kernelkit.io import ArtifactError, load_artifact, save_artifact

__all__ = ["FairPreferenceCollator", "FaroConfig", "ProxyGDATrainer", "StratifiedGroupSampler"]


def _encode_float(value: float) -> float | str:
    """JSON has no inf/nan; ``max_violation`` is ``-inf`` when no constraint is active."""
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _decode_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"{what} must be a number, got {value!r}")
    if isinstance(value, str) and value not in ("inf", "-inf", "nan"):
        raise ValueError(f"{what} must be a number or 'inf'/'-inf'/'nan', got {value!r}")
    return float(value)


STATE_DIRECTORY = "faro_state"
STATE_KIND = "faro-proxy-gda-state"
BEST_DIRECTORY = "faro_best_iterate"
BEST_KIND = "faro-proxy-gda-best-iterate"
_RECORD_FIELDS = ("step", "bt_loss", "accuracy", "max_violation", "feasible")
TWIN_ID_COLUMNS = ("chosen_cf_ids", "rejected_cf_ids")


@dataclass
class FaroConfig(RewardConfig):
    """``RewardConfig`` plus the fairness game. Slack and bound are in rate units (0..1)."""

    constraint: str = field(
        default="demographic_parity",
        metadata={"help": "demographic_parity (dp), equalized_odds (eo) or counterfactual (cf)"},
    )
    epsilon: float = field(
        default=0.05, metadata={"help": "slack: each one-sided rate statistic must stay <= epsilon"}
    )
    num_groups: int = field(
        default=2, metadata={"help": "number K of groups; group ids are 0..K-1"}
    )
    anchor_group: int = field(
        default=0, metadata={"help": "group every other group is compared with (DP, EO)"}
    )
    num_outcomes: int = field(
        default=2, metadata={"help": "number of values of the EO outcome column 'label'"}
    )
    multiplier_bound: float = field(
        default=10.0, metadata={"help": "box bound B: multipliers live in [0, B]"}
    )
    dual_lr: float = field(
        default=0.05, metadata={"help": "ascent step of the multipliers on hard violations"}
    )
    fairness_eval_steps: int = field(
        default=50, metadata={"help": "steps between validation-feasibility checks"}
    )
    stratify_groups: bool = field(
        default=True, metadata={"help": "interleave groups so every batch holds each one"}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.constraint.lower() not in CONSTRAINT_NAMES:
            raise ValueError(
                f"unknown constraint {self.constraint!r}; expected one of {sorted(CONSTRAINT_NAMES)}"
            )
        if not math.isfinite(self.epsilon) or self.epsilon < 0:
            raise ValueError(f"epsilon must be a finite number >= 0, got {self.epsilon!r}")
        if self.fairness_eval_steps < 1:
            raise ValueError(f"fairness_eval_steps must be >= 1, got {self.fairness_eval_steps}")

    def build_constraint(self) -> Constraint:
        return make_constraint(
            self.constraint,
            self.epsilon,
            num_groups=self.num_groups,
            anchor=self.anchor_group,
            num_outcomes=self.num_outcomes,
        )


@dataclass
class FairPreferenceCollator(DataCollatorForPreference):
    """Pads ``[chosen; rejected]`` (then ``[chosen_cf; rejected_cf]`` when present) and adds group tensors.

    Output keys: ``input_ids``, ``attention_mask``, optional ``margin``, and ``faro_group``,
    ``faro_orientation`` (+1 when absent), ``faro_label`` (when present).
    """

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        keys = ["chosen_ids", "rejected_ids"]
        if TWIN_ID_COLUMNS[0] in examples[0]:
            keys += list(TWIN_ID_COLUMNS)
        sequences = [torch.tensor(example[key]) for key in keys for example in examples]
        output: dict[str, Any] = {
            "input_ids": pad(
                sequences,
                padding_value=self.pad_token_id,
                padding_side="right",
                pad_to_multiple_of=self.pad_to_multiple_of,
            ),
            "attention_mask": pad(
                [torch.ones_like(s) for s in sequences],
                padding_value=0,
                padding_side="right",
                pad_to_multiple_of=self.pad_to_multiple_of,
            ),
        }
        if "margin" in examples[0]:
            output["margin"] = torch.tensor(
                [example["margin"] for example in examples], dtype=torch.float
            )
        if GROUP_COLUMN not in examples[0]:
            raise KeyError(
                f"examples must carry a '{GROUP_COLUMN}' entry; got keys {sorted(examples[0])}"
            )
        output["faro_group"] = torch.tensor(
            [example[GROUP_COLUMN] for example in examples], dtype=torch.long
        )
        output["faro_orientation"] = torch.tensor(
            [example.get(ORIENTATION_COLUMN, 1) for example in examples], dtype=torch.long
        )
        if LABEL_COLUMN in examples[0]:
            output["faro_label"] = torch.tensor(
                [example[LABEL_COLUMN] for example in examples], dtype=torch.long
            )
        return output


class StratifiedGroupSampler(Sampler[int]):
    """Each pass is a permutation that spreads every group evenly (see :func:`faro.linear.stratified_order`).

    Seeded by ``seed`` and the pass number, so every process draws the same order and the
    distributed batch sharding hands each process consecutive, stratified windows.
    ``set_epoch`` pins the pass number to the epoch, so a resumed run replays the same orders.
    """

    def __init__(self, groups: list[int], seed: int) -> None:
        self.groups = torch.as_tensor(groups, dtype=torch.long)
        self.seed = seed
        self.passes = 0

    def __len__(self) -> int:
        return self.groups.shape[0]

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass the one of ``epoch``, so a run resumed mid-training draws the order
        an uninterrupted run draws (the trainer calls this at the start of every epoch)."""
        self.passes = int(epoch)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.passes)
        self.passes += 1
        return iter(stratified_order(self.groups, generator).tolist())


class _FeasibilityCallback(TrainerCallback):
    def __init__(self, trainer: ProxyGDATrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.trainer.args.fairness_eval_steps == 0:
            self.trainer.track_feasible_iterate()
        return control


def _check_dataset(dataset: Dataset, constraint: Constraint, name: str) -> None:
    columns = dataset.column_names
    if GROUP_COLUMN not in columns:
        raise ValueError(f"{name} lacks the '{GROUP_COLUMN}' column; it has {sorted(columns)}")
    counts = torch.bincount(torch.as_tensor(dataset[GROUP_COLUMN], dtype=torch.long))
    if counts.numel() > constraint.num_groups:
        raise ValueError(
            f"{name} has group ids up to {counts.numel() - 1}, but num_groups={constraint.num_groups}"
        )
    empty = [g for g in range(constraint.num_groups) if g >= counts.numel() or counts[g] == 0]
    if empty:
        raise ValueError(
            f"{name} has no examples for group(s) {empty}; every group needs at least one pair"
        )
    if constraint.needs_label and LABEL_COLUMN not in columns:
        raise ValueError(
            f"{type(constraint).__name__} needs the outcome column '{LABEL_COLUMN}' in {name}; it has {sorted(columns)}"
        )
    if constraint.needs_twins and not (
        {"chosen_cf", "rejected_cf"} <= set(columns) or set(TWIN_ID_COLUMNS) <= set(columns)
    ):
        raise ValueError(
            f"{type(constraint).__name__} needs twin columns chosen_cf and rejected_cf (prompt_cf optional) in {name}; "
            f"it has {sorted(columns)}"
        )


class ProxyGDATrainer(RewardTrainer):
    """trl ``RewardTrainer`` trained by the proxy-Lagrangian game under a fairness constraint.

    ``args`` must be a :class:`FaroConfig`; datasets carry ``group`` (+ ``orientation``, ``label``,
    twin columns). After :meth:`train`, ``best_iterate`` describes the loaded iterate and
    ``lagrangian.multipliers`` holds the final multipliers.
    """

    def __init__(
        self,
        model,
        args: FaroConfig,
        train_dataset: Dataset,
        eval_dataset: Dataset | None = None,
        data_collator=None,
        **kwargs,
    ):
        if not isinstance(args, FaroConfig):
            raise TypeError(f"args must be a FaroConfig, got {type(args).__name__}")
        if not isinstance(train_dataset, Dataset):
            raise TypeError(
                f"train_dataset must be a datasets.Dataset, got {type(train_dataset).__name__}"
            )
        if eval_dataset is not None and not isinstance(eval_dataset, Dataset):
            raise TypeError(
                f"eval_dataset must be a single datasets.Dataset or None, got {type(eval_dataset).__name__}"
            )
        self.constraint = args.build_constraint()
        _check_dataset(train_dataset, self.constraint, "train_dataset")
        if eval_dataset is not None:
            _check_dataset(eval_dataset, self.constraint, "eval_dataset")
        self.lagrangian = ProxyLagrangian(
            self.constraint.num_constraints, bound=args.multiplier_bound, dual_lr=args.dual_lr
        )
        self.best_iterate: dict[str, float] | None = None
        self._best_state: dict[str, torch.Tensor] | None = None
        self._best_key: tuple[int, float] | None = None
        user_collator = data_collator
        super().__init__(
            model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            data_collator=user_collator,
            **kwargs,
        )
        if user_collator is None:
            self.data_collator = FairPreferenceCollator(
                pad_token_id=self.processing_class.pad_token_id,
                pad_to_multiple_of=args.pad_to_multiple_of,
            )
        self.add_callback(_FeasibilityCallback(self))

    # -- data ----------------------------------------------------------------------------------
    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        columns = dataset.column_names
        if "chosen_cf" in columns and TWIN_ID_COLUMNS[0] not in columns:
            eos = processing_class.eos_token

            def tokenize_twins(example):
                prompt = example.get("prompt_cf", example.get("prompt", "")) or ""
                out = {}
                for text_column, id_column in (
                    ("chosen_cf", TWIN_ID_COLUMNS[0]),
                    ("rejected_cf", TWIN_ID_COLUMNS[1]),
                ):
                    text = prompt + example[text_column]
                    if eos is not None and not text.endswith(eos):
                        text += eos
                    out[id_column] = processing_class(text=text)["input_ids"]
                return out

            dataset = dataset.map(
                tokenize_twins,
                remove_columns=[c for c in TWIN_COLUMNS if c in columns],
                desc=f"Tokenizing {dataset_name} twins",
            )
        dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)
        if args.max_length is not None and TWIN_ID_COLUMNS[0] in dataset.column_names:
            dataset = dataset.filter(
                lambda e: (
                    max(len(e[TWIN_ID_COLUMNS[0]]), len(e[TWIN_ID_COLUMNS[1]])) <= args.max_length
                )
            )
        return dataset

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            # twins double the forward pass, so they travel only when the constraint reads them
            twins = list(TWIN_ID_COLUMNS) if self.constraint.needs_twins else []
            self._signature_columns = [
                "chosen_ids",
                "rejected_ids",
                "margin",
                GROUP_COLUMN,
                ORIENTATION_COLUMN,
                LABEL_COLUMN,
                *twins,
            ]

    def _get_train_sampler(self, train_dataset=None):
        dataset = self.train_dataset if train_dataset is None else train_dataset
        if (
            self.args.stratify_groups
            and isinstance(dataset, Dataset)
            and GROUP_COLUMN in dataset.column_names
        ):
            return StratifiedGroupSampler(dataset[GROUP_COLUMN], seed=self.args.seed)
        return super()._get_train_sampler(train_dataset)

    # -- the game ------------------------------------------------------------------------------
    def _split_rewards(self, logits: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, ...]:
        rewards = logits.squeeze(-1)
        return tuple(rewards.split(batch_size))

    def _all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.reduce(tensor.detach().clone(), reduction="sum")

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        group = inputs.pop("faro_group")
        orientation = inputs.pop("faro_orientation")
        label = inputs.pop("faro_label", None)
        pair_margin = inputs.pop("margin", None)
        inputs["use_cache"] = False
        outputs = model(**inputs)
        chunks = self._split_rewards(outputs.logits, group.shape[0])
        rewards_chosen, rewards_rejected = chunks[0], chunks[1]
        diff = rewards_chosen - rewards_rejected
        bt_diff = diff if pair_margin is None else diff - pair_margin
        loss = -nn.functional.logsigmoid(bt_diff).mean()
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(
                (rewards_chosen + rewards_rejected) ** 2
            )

        sign = orientation.to(diff.dtype)
        canonical = sign * diff
        twin = sign * (chunks[2] - chunks[3]) if len(chunks) == 4 else None
        if self.constraint.needs_twins and twin is None:
            raise ValueError(
                "the counterfactual constraint needs twin columns, but the batch carries none"
            )
        constraint = self.constraint
        hard_sums, counts = constraint.cell_statistics(
            canonical.detach(), group, label, None if twin is None else twin.detach(), proxy=False
        )
        reduced = self._all_reduce_sum(torch.stack([hard_sums, counts]))
        hard = constraint.from_statistics(reduced[0], reduced[1])
        if mode == "train":
            proxy_sums, _ = constraint.cell_statistics(canonical, group, label, twin, proxy=True)
            proxy = constraint.from_statistics(
                proxy_sums, reduced[1], count_scale=1.0 / self.accelerator.num_processes
            )
            loss = loss + self.lagrangian.penalty(proxy.violations, proxy.active)
            self.lagrangian.ascend(hard.violations, hard.active)
            self._metrics[mode]["max_multiplier"].append(float(self.lagrangian.multipliers.max()))
        if bool(hard.active.any()):
            self._metrics[mode]["max_violation"].append(hard.max_violation)

        with torch.no_grad():
            accuracy = self.accelerator.gather_for_metrics((diff > 0).float().mean()).mean().item()
            self._metrics[mode]["accuracy"].append(accuracy)
            mean_margin = self.accelerator.gather_for_metrics(diff.mean()).mean().item()
            self._metrics[mode]["margin"].append(mean_margin)
        return (loss, outputs) if return_outputs else loss

    # -- best feasible iterate -----------------------------------------------------------------
    @torch.no_grad()
    def validate_fairness(self) -> dict[str, float]:
        """BT loss, accuracy and hard constraint violation of the current model on the eval set."""
        if self.eval_dataset is None:
            raise ValueError(
                "validate_fairness needs an eval_dataset; none was given to the trainer"
            )
        model = self.model
        was_training = model.training
        model.eval()
        parts: dict[str, list[torch.Tensor]] = {
            "diff": [],
            "group": [],
            "orientation": [],
            "label": [],
            "twin": [],
        }
        try:
            for batch in self.get_eval_dataloader():
                group = batch.pop("faro_group")
                orientation = batch.pop("faro_orientation")
                label = batch.pop("faro_label", None)
                batch.pop("margin", None)
                batch = self._prepare_inputs(batch)
                chunks = self._split_rewards(model(**batch, use_cache=False).logits, group.shape[0])
                gather = self.accelerator.gather_for_metrics
                parts["diff"].append(gather(chunks[0] - chunks[1]).float().cpu())
                parts["group"].append(gather(group.to(chunks[0].device)).cpu())
                parts["orientation"].append(gather(orientation.to(chunks[0].device)).cpu())
                if label is not None:
                    parts["label"].append(gather(label.to(chunks[0].device)).cpu())
                if len(chunks) == 4:
                    parts["twin"].append(gather(chunks[2] - chunks[3]).float().cpu())
        finally:
            model.train(was_training)
        diff = torch.cat(parts["diff"])
        sign = torch.cat(parts["orientation"]).to(diff.dtype)
        label = torch.cat(parts["label"]) if parts["label"] else None
        twin = sign * torch.cat(parts["twin"]) if parts["twin"] else None
        evaluation = self.constraint.evaluate(sign * diff, torch.cat(parts["group"]), label, twin)
        return {
            "bt_loss": float(-nn.functional.logsigmoid(diff).mean()),
            "accuracy": float((diff > 0).float().mean()),
            "max_violation": evaluation.max_violation,
            "feasible": float(evaluation.feasible),
        }

    def track_feasible_iterate(self) -> None:
        """Validate now and keep a CPU copy of the weights if this is the best iterate so far."""
        if self.eval_dataset is None:
            return
        record = self.validate_fairness()
        key = (0, record["bt_loss"]) if record["feasible"] else (1, record["max_violation"])
        if self._best_key is None or key < self._best_key:
            self._best_key = key
            unwrapped = self.accelerator.unwrap_model(self.model)
            self._best_state = {
                name: t.detach().to("cpu", copy=True) for name, t in unwrapped.state_dict().items()
            }
            self.best_iterate = {"step": float(self.state.global_step), **record}

    def train(self, *args, **kwargs):
        output = super().train(*args, **kwargs)
        self.track_feasible_iterate()
        if self._best_state is not None:
            self.accelerator.unwrap_model(self.model).load_state_dict(
                copy.deepcopy(self._best_state)
            )
        return output

    # -- checkpoints ---------------------------------------------------------------------------
    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            checkpoint = os.path.join(
                self._get_output_dir(trial=trial),
                f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}",
            )
            has_best = self._best_state is not None
            if has_best:
                # written before faro_state, whose manifest (written last) says a best copy exists:
                # a save cut short leaves a state that points at a missing or unfinished copy,
                # which loading reports instead of silently restarting the selection
                save_artifact(
                    os.path.join(checkpoint, BEST_DIRECTORY),
                    self._best_state,
                    self._best_config(),
                    kind=BEST_KIND,
                )
            save_artifact(
                os.path.join(checkpoint, STATE_DIRECTORY),
                self.lagrangian.state_dict(),
                {
                    "constraint": self.constraint.name,
                    "epsilon": self.constraint.epsilon,
                    "has_best_iterate": has_best,
                },
                kind=STATE_KIND,
            )

    def _best_config(self) -> dict[str, Any]:
        assert self.best_iterate is not None and self._best_key is not None
        return {
            "constraint": self.constraint.name,
            "epsilon": self.constraint.epsilon,
            "key": [int(self._best_key[0]), _encode_float(self._best_key[1])],
            "record": {name: _encode_float(self.best_iterate[name]) for name in _RECORD_FIELDS},
        }

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        folder = os.path.join(resume_from_checkpoint, STATE_DIRECTORY)
        if not os.path.isdir(folder):
            return
        tensors, config = load_artifact(folder, kind=STATE_KIND)
        self.lagrangian.load_state_dict(tensors)
        if config.get("has_best_iterate"):
            self._load_best_iterate(os.path.join(resume_from_checkpoint, BEST_DIRECTORY))
        else:
            # no best copy existed when the checkpoint was written (or an older faro wrote it)
            self._best_state, self._best_key, self.best_iterate = None, None, None

    def _load_best_iterate(self, folder: str) -> None:
        """Restore the best-iterate weights, score and selection key saved by ``_save_checkpoint``."""
        reference = self.accelerator.unwrap_model(self.model).state_dict()
        try:
            tensors, config = load_artifact(
                folder,
                kind=BEST_KIND,
                expected_shapes={name: tuple(t.shape) for name, t in reference.items()},
            )
            extra = sorted(set(tensors) - set(reference))
            if extra:
                raise ArtifactError(
                    f"it holds tensors the model does not have: {extra[:5]}"
                    + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
                )
            key = config["key"]
            if not isinstance(key, list) or len(key) != 2 or key[0] not in (0, 1):
                raise ArtifactError(f"its selection key must be [0 or 1, score], got {key!r}")
            best_key = (int(key[0]), _decode_float(key[1], "the selection score"))
            record = {
                name: _decode_float(config["record"][name], f"record[{name!r}]")
                for name in _RECORD_FIELDS
            }
        except (ArtifactError, KeyError, TypeError, ValueError) as err:
            if isinstance(err, KeyError):
                err = ArtifactError(f"its manifest config lacks {err}")
            raise ArtifactError(
                f"checkpoint best-iterate copy {folder!r} is missing, corrupt or does not fit this "
                f"model, so the best feasible iterate cannot be restored: {err}"
            ) from err
        if (config.get("constraint"), config.get("epsilon")) != (
            self.constraint.name,
            self.constraint.epsilon,
        ):
            raise ValueError(
                f"checkpoint best iterate {folder!r} was selected under constraint "
                f"{config.get('constraint')!r} with epsilon {config.get('epsilon')!r}, but this run "
                f"uses {self.constraint.name!r} with epsilon {self.constraint.epsilon!r}; its "
                "feasibility does not carry over (resume with the same constraint, or start afresh)"
            )
        self._best_state = {name: tensors[name].to(reference[name].dtype) for name in reference}
        self._best_key = best_key
        self.best_iterate = record
