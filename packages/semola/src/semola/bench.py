"""Training-step time of SEMoLA with K views against the plain model, as ratios."""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from kernelkit.utils import pick_device
from semola.data import make_digits, make_rotation_points
from semola.loss import SEMoLALossConfig
from semola.training import TrainConfig, build_trainer, task_loss_for

__all__ = ["run"]


def _step_fn(trainer, task, batch_size: int, device: torch.device):
    trainer.to(device).train()
    optimiser = torch.optim.Adam([p for p in trainer.parameters() if p.requires_grad], lr=1e-3)
    x, y = task.x_train[:batch_size].to(device), task.y_train[:batch_size].to(device)
    task_loss = task_loss_for(task)

    def step() -> None:
        optimiser.zero_grad(set_to_none=True)
        trainer.compute_loss(x, y, task_loss).total.backward()
        optimiser.step()

    return step


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """For K in {1, 2, 4, 8}: SEMoLA step time / plain step time on the 2-D task and on digits."""
    dev = pick_device(device)
    repeats = 10 if quick else 30
    tasks = [("rotation2d", make_rotation_points(1024), 128, 64)]
    tasks.append(("digits", make_digits(max_samples=300 if quick else None), 64, 32))
    results = []
    for name, task, batch_size, hidden in tasks:
        # On digits the CNN, as in the README's table (the harness's default there is an MLP).
        plain = build_trainer(
            task, TrainConfig(task=name, method="none", hidden=hidden, model="cnn")
        )
        plain_step = _step_fn(plain, task, batch_size, dev)
        for views in (1, 2, 4, 8):
            trainer = build_trainer(
                task,
                TrainConfig(task=name, method="semola", hidden=hidden, model="cnn"),
                SEMoLALossConfig(num_views=views),
            )
            results.append(
                compare(
                    _step_fn(trainer, task, batch_size, dev),
                    plain_step,
                    name=f"{name} training step, K={views}",
                    label_a=f"semola K={views}",
                    label_b="plain model",
                    repeats=repeats,
                    device=dev,
                    meta={"task": name, "num_views": views, "batch_size": batch_size},
                )
            )
    return results
