"""Time per training step of Faro (each constraint type) against plain Bradley-Terry, as ratios.

Two settings, each on the same model and batch: the plain-torch linear path (loss + gradient on
feature pairs) and trl's ``RewardTrainer.training_step`` (forward + backward) on a tiny Llama
reward model versus :class:`faro.ProxyGDATrainer`'s. DP and EO reuse the in-batch rewards; CF
scores the twins too, so its step does about twice the model work.
"""

from __future__ import annotations

import tempfile

import torch

from faro.constraints import make_constraint
from faro.data import synthetic_preferences, synthetic_text_preferences
from faro.lagrangian import ProxyLagrangian
from faro.linear import LinearRewardModel
from kernelkit.bench import Comparison, compare
from kernelkit.testing import tiny_sequence_classifier
from kernelkit.utils import torch_threads

__all__ = ["run"]

CONSTRAINTS = ("demographic_parity", "equalized_odds", "counterfactual")


def _linear_step(model: LinearRewardModel, batch, constraint, lagrangian):
    def step():
        diff = model(batch.chosen) - model(batch.rejected)
        loss = -torch.nn.functional.logsigmoid(diff).mean()
        if constraint is not None:
            sign = batch.orientation.to(diff.dtype)
            twin = (
                sign * (model(batch.chosen_twin) - model(batch.rejected_twin))
                if constraint.needs_twins
                else None
            )
            proxy = constraint.evaluate(sign * diff, batch.group, batch.label, twin, proxy=True)
            hard = constraint.evaluate(
                (sign * diff).detach(),
                batch.group,
                batch.label,
                None if twin is None else twin.detach(),
            )
            loss = loss + lagrangian.penalty(proxy.violations, proxy.active)
            lagrangian.ascend(hard.violations, hard.active)
        torch.autograd.grad(loss, list(model.parameters()))

    return step


def _trainer_step(trainer, batch):
    # training_step reads this attribute, which Trainer.train() sets on entry
    trainer.current_gradient_accumulation_steps = 1

    def step():
        trainer.training_step(
            trainer.model, {k: v.clone() if torch.is_tensor(v) else v for k, v in batch.items()}
        )

    return step


def run(quick: bool = True, device=None) -> list[Comparison]:
    """Ratios ``Faro step / BT step`` for the linear path and for trl's trainer step."""
    with torch_threads(1):
        return _run(quick, device)


def _run(quick: bool, device) -> list[Comparison]:
    from transformers import ByT5Tokenizer
    from trl import RewardConfig, RewardTrainer

    from faro.trainer import FaroConfig, ProxyGDATrainer

    repeats = 10 if quick else 30
    results = []
    pairs = synthetic_preferences(4096 if quick else 32768, seed=0)
    model = LinearRewardModel(pairs.num_features)
    baseline = _linear_step(model, pairs, None, None)
    for name in CONSTRAINTS:
        constraint = make_constraint(name, 0.05)
        lagrangian = ProxyLagrangian(constraint.num_constraints)
        results.append(
            compare(
                _linear_step(model, pairs, constraint, lagrangian),
                baseline,
                name=f"linear step, {name}",
                label_a=f"faro-{name}",
                label_b="bt",
                repeats=repeats,
                device="cpu",
                meta={"pairs": len(pairs)},
            )
        )

    tokenizer = ByT5Tokenizer()
    data = synthetic_text_preferences(32 if quick else 128, seed=0)
    batch_size = len(data)
    with tempfile.TemporaryDirectory() as output_dir:
        common = dict(
            output_dir=output_dir,
            report_to=[],
            use_cpu=True,
            bf16=False,
            per_device_train_batch_size=batch_size,
            disable_tqdm=True,
        )
        plain = RewardTrainer(
            tiny_sequence_classifier()[0],
            args=RewardConfig(**common),
            train_dataset=data,
            processing_class=tokenizer,
        )
        plain_batch = plain.data_collator([plain.train_dataset[i] for i in range(batch_size)])
        plain_step = _trainer_step(plain, plain_batch)
        for name in CONSTRAINTS:
            faro_trainer = ProxyGDATrainer(
                tiny_sequence_classifier()[0],
                args=FaroConfig(constraint=name, epsilon=0.05, **common),
                train_dataset=data,
                processing_class=tokenizer,
            )
            train_set = faro_trainer._remove_unused_columns(faro_trainer.train_dataset)
            faro_batch = faro_trainer.data_collator([train_set[i] for i in range(batch_size)])
            results.append(
                compare(
                    _trainer_step(faro_trainer, faro_batch),
                    plain_step,
                    name=f"trl training_step, {name}",
                    label_a=f"ProxyGDATrainer-{name}",
                    label_b="RewardTrainer",
                    repeats=repeats,
                    device="cpu",
                    meta={"pairs": batch_size, "model": "llama 2x64 (from config)"},
                )
            )
    return results
