"""Time per projection update against one Adam step on the same model and batch, across widths
and depths (how the cost of the per-edge copies grows), and the batched sweep against the
per-node sweep on one MLP update."""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from kernelkit.utils import torch_threads
from pjax_torch import api, nn
from pjax_torch.optim import DouglasRachford

__all__ = ["run", "sweep_speedup"]


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    device = (
        torch.device(device)
        if device is not None
        else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    )
    widths = (16, 32) if quick else (32, 64, 128, 256)
    depths = (1, 2) if quick else (1, 2, 4)
    batch, steps = (64, 10) if quick else (256, 50)
    results = []
    with torch_threads(1):
        for depth in depths:
            for width in widths:
                g = torch.Generator().manual_seed(0)
                model = nn.MLP([64, *([width] * depth), 10])
                params = {k: v.to(device) for k, v in model.init(g).items()}
                x = torch.rand(batch, 64, generator=g).to(device)
                y = torch.randint(0, 10, (batch,), generator=g).to(device)
                optimizer = DouglasRachford(steps_per_update=steps)

                def projection_update(params=params, model=model, x=x, y=y, optimizer=optimizer):
                    optimizer.update(lambda p: api.cross_entropy(model(p, x), y), params)

                leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
                adam = torch.optim.Adam(leaves.values(), lr=1e-3)

                def adam_step(leaves=leaves, adam=adam, model=model, x=x, y=y):
                    adam.zero_grad()
                    api.cross_entropy(model(leaves, x), y).backward()
                    adam.step()

                results.append(
                    compare(
                        projection_update,
                        adam_step,
                        name=f"MLP depth {depth} width {width}",
                        label_a=f"DR update ({steps} iterations)",
                        label_b="Adam step",
                        warmup=1,
                        repeats=3 if quick else 5,
                        device=device,
                        meta={
                            "batch": batch,
                            "depth": depth,
                            "width": width,
                            "iterations_per_update": steps,
                            "copies_per_dense_layer": batch * width * width,
                        },
                    )
                )
        results.append(sweep_speedup(quick=quick, device=device))
    return results


def sweep_speedup(
    quick: bool = True, device: str | torch.device | None = None, sizes=(64, 32, 32, 10)
) -> Comparison:
    """One DR update of an MLP with the per-node sweep (A) and the batched sweep (B), one
    thread; ``ratio`` is the batched sweep's speed-up (their iterates agree to rounding)."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    batch, steps = (64, 10) if quick else (256, 50)
    g = torch.Generator().manual_seed(0)
    model = nn.MLP(list(sizes))
    params = {k: v.to(device) for k, v in model.init(g).items()}
    x = torch.rand(batch, sizes[0], generator=g).to(device)
    y = torch.randint(0, sizes[-1], (batch,), generator=g).to(device)
    updates = {}
    for sweep in ("per_node", "batched"):
        optimizer = DouglasRachford(steps_per_update=steps, sweep=sweep)
        updates[sweep] = lambda optimizer=optimizer: optimizer.update(
            lambda p: api.cross_entropy(model(p, x), y), params
        )
    return compare(
        updates["per_node"],
        updates["batched"],
        name=f"MLP {'-'.join(map(str, sizes))} sweep",
        label_a=f"per-node sweep DR update ({steps} iterations)",
        label_b="batched sweep DR update",
        warmup=1,
        repeats=5 if quick else 7,
        device=device,
        threads=1,
        meta={"batch": batch, "sizes": list(sizes), "iterations_per_update": steps},
    )
