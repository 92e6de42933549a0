"""One rank of the two-process CPU (gloo) checks in ``test_distributed.py``.

Started by ``python -m torch.distributed.run --nproc_per_node 2 distributed_worker.py MODE OUT``;
every rank writes ``OUT/rank{RANK}.pt`` and the test compares the files with single-process
results. Modes:

* ``statistics``: the reduction the trainer performs, with ``torch.distributed`` directly: each
  rank evaluates its part of one batch (an uneven split), all-reduces the hard cell sums and
  counts, forms violations and ascends the multipliers, and takes the proxy-penalty gradient of
  local sums over global counts (``count_scale = 1 / world_size``), averaged over ranks as DDP
  averages gradients.
* ``trainer``: ``ProxyGDATrainer.compute_loss`` on each rank's half of one collated batch
  (accelerate's multi-CPU state, gloo), compared on every rank with a direct whole-batch
  computation; then a short ``train()`` whose multipliers must agree across ranks.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

NUM_PAIRS = 40
SPLIT = 25  # rank 0 gets the first 25 pairs, rank 1 the other 15
START_MULTIPLIERS = 0.5
ASCENT_STEPS = 3


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        "margin": torch.randn(NUM_PAIRS, generator=generator, dtype=torch.float64),
        "twin": torch.randn(NUM_PAIRS, generator=generator, dtype=torch.float64),
        "group": torch.randint(0, 3, (NUM_PAIRS,), generator=generator),
        "label": torch.randint(0, 2, (NUM_PAIRS,), generator=generator),
    }


def reduction_step(name: str, indices: torch.Tensor, reduce) -> dict[str, torch.Tensor]:
    """Statistics, multipliers and the averaged proxy gradient, with ``reduce`` the all-reduce (sum)."""
    from faro.constraints import make_constraint
    from faro.lagrangian import ProxyLagrangian

    data = batch()
    constraint = make_constraint(name, 0.02, num_groups=3)
    world = reduce(torch.ones((), dtype=torch.float64))
    group, label = data["group"][indices], data["label"][indices]
    twin = data["twin"][indices]
    sums, counts = constraint.cell_statistics(data["margin"][indices], group, label, twin)
    reduced = reduce(torch.stack([sums, counts]))
    hard = constraint.from_statistics(reduced[0], reduced[1])
    lagrangian = ProxyLagrangian(constraint.num_constraints, bound=1.0, dual_lr=0.3)
    lagrangian.multipliers.fill_(START_MULTIPLIERS)
    for _ in range(ASCENT_STEPS):
        lagrangian.ascend(hard.violations, hard.active)

    leaf = data["margin"].clone().requires_grad_(True)
    proxy_sums, _ = constraint.cell_statistics(leaf[indices], group, label, twin, proxy=True)
    proxy = constraint.from_statistics(proxy_sums, reduced[1], count_scale=1.0 / float(world))
    lagrangian.penalty(proxy.violations, proxy.active).backward()
    return {
        "rates": reduced[0] / reduced[1].clamp_min(1),
        "counts": reduced[1],
        "statistics": hard.statistics,
        "violations": hard.violations,
        "active": hard.active,
        "multipliers": lagrangian.multipliers,
        "gradient": reduce(leaf.grad) / world,
    }


def run_statistics(rank: int) -> dict[str, dict[str, torch.Tensor]]:
    indices = torch.arange(NUM_PAIRS)
    part = indices[:SPLIT] if rank == 0 else indices[SPLIT:]

    def all_reduce(tensor: torch.Tensor) -> torch.Tensor:
        tensor = tensor.detach().clone()
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    return {name: reduction_step(name, part, all_reduce) for name in ("dp", "eo", "cf")}


def tiny_setup(tmp: Path, **overrides):
    from faro import FaroConfig, synthetic_text_preferences

    from kernelkit.testing import tiny_sequence_classifier

    model, tokenizer = tiny_sequence_classifier(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    model.train()
    settings = dict(
        output_dir=str(tmp),
        report_to=[],
        use_cpu=True,
        bf16=False,
        ddp_backend="gloo",
        save_strategy="no",
        disable_tqdm=True,
        logging_steps=1,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        constraint="dp",
        epsilon=0.0,
        dual_lr=0.5,
        seed=0,
        data_seed=0,
    )
    settings.update(overrides)
    return model, tokenizer, FaroConfig(**settings), synthetic_text_preferences


def run_trainer(rank: int, out: Path) -> dict[str, torch.Tensor]:
    from faro import ProxyGDATrainer, make_constraint
    from faro.lagrangian import ProxyLagrangian
    from torch import nn

    model, tokenizer, args, make_data = tiny_setup(out / "run")
    train = make_data(64, seed=1)
    trainer = ProxyGDATrainer(
        model,
        args=args,
        train_dataset=train,
        eval_dataset=make_data(32, seed=2),
        processing_class=tokenizer,
    )
    assert trainer.accelerator.num_processes == 2, trainer.accelerator.state

    # one micro-batch of 16 pairs: each rank sees its half, the reference the whole
    # the columns the dataloader keeps (DP reads no twins)
    keep = ("chosen_ids", "rejected_ids", "group", "orientation", "label")
    rows = [{k: trainer.train_dataset[i][k] for k in keep} for i in range(16)]
    whole = trainer.data_collator(rows)
    half = trainer.data_collator(rows[8 * rank : 8 * (rank + 1)])
    model.train()
    start = torch.linspace(0.1, 0.4, trainer.lagrangian.multipliers.numel(), dtype=torch.float64)
    trainer.lagrangian.multipliers = start.clone()
    model.zero_grad()
    loss = trainer.compute_loss(model, dict(half))
    loss.backward()
    gradient = torch.cat([p.grad.flatten() for p in model.parameters()])
    dist.all_reduce(gradient)
    gradient /= 2
    distributed_multipliers = trainer.lagrangian.multipliers.clone()

    # the single-process result on the whole batch, computed directly
    model.zero_grad()
    group = whole.pop("faro_group")
    sign = whole.pop("faro_orientation").float()
    whole.pop("faro_label", None)
    rewards = model(**whole, use_cache=False).logits.squeeze(-1)
    diff = rewards[:16] - rewards[16:]
    constraint = make_constraint("dp", 0.0)
    lagrangian = ProxyLagrangian(constraint.num_constraints, dual_lr=0.5)
    lagrangian.multipliers = start.clone()
    proxy = constraint.evaluate(sign * diff, group, proxy=True)
    reference_loss = -nn.functional.logsigmoid(diff).mean()
    (reference_loss + lagrangian.penalty(proxy.violations, proxy.active)).backward()
    hard = constraint.evaluate((sign * diff).detach(), group)
    mine = slice(8 * rank, 8 * (rank + 1))
    local = constraint.evaluate((sign * diff).detach()[mine], group[mine])
    lagrangian.ascend(hard.violations, hard.active)
    reference_gradient = torch.cat([p.grad.flatten() for p in model.parameters()])
    model.zero_grad()

    # a short real run under DDP
    trainer.lagrangian.multipliers.zero_()
    trainer.args.max_steps = 3
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "distributed_multipliers": distributed_multipliers,
        "reference_multipliers": lagrangian.multipliers,
        "gradient": gradient,
        "reference_gradient": reference_gradient,
        "hard_statistics": hard.statistics.detach(),
        "local_statistics": local.statistics.detach(),
        "final_multipliers": trainer.lagrangian.multipliers.clone(),
        "losses": torch.tensor(losses, dtype=torch.float64),
        "best_step": torch.tensor(trainer.best_iterate["step"] if trainer.best_iterate else -1.0),
    }


def main() -> None:
    mode, out = sys.argv[1], Path(sys.argv[2])
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    if mode == "statistics":
        dist.init_process_group("gloo")
        result = run_statistics(rank)
    elif mode == "trainer":
        result = run_trainer(rank, out)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    torch.save(result, out / f"rank{rank}.pt")
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
