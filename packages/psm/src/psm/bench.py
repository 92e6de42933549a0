"""Benchmarks, as ratios measured side by side in one process.

- Streaming inference per token at several sequence lengths: the Transformer-PSM's stream
  (``O(log n)`` states) against a causal transformer with a KV cache (``O(n)`` keys); and the
  PSM at a long length against itself at a short one (flatness).
- The associative scan (GLA steps): the generic PSM tree and a Python loop, each against
  :func:`kernelkit.scan.linear_scan`.
"""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from kernelkit.utils import pick_device
from psm.affine import affine_states, gla_steps
from psm.baselines import CausalTransformerLM
from psm.layers import KVCache
from psm.transformer_psm import TransformerPSM, TransformerPSMConfig

__all__ = ["run"]


def _psm_stepper(model: TransformerPSM, length: int, device: torch.device):
    stream = model.stream()
    token = torch.zeros(1, dtype=torch.long, device=device)
    with torch.no_grad():
        for _ in range(length):
            stream.step(token)

    def step() -> None:
        with torch.no_grad():
            stream.step(token)

    return step


def _transformer_stepper(model: CausalTransformerLM, length: int, device: torch.device):
    cache = KVCache()
    token = torch.zeros(1, dtype=torch.long, device=device)
    with torch.no_grad():
        model.step(token.repeat(1), cache)
        # Prefill the cache in one forward-sized call per layer instead of `length` steps.
        x = model.embedding(torch.zeros(1, length - 1, dtype=torch.long, device=device))
        for layer, block in enumerate(model.blocks):
            x = block(x, causal=True, cache=cache, layer=layer)

    def step() -> None:
        with torch.no_grad():
            model.step(token, cache)

    return step


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """Streaming per-token cost and associative-scan paths, as ratios."""
    dev = pick_device(device)
    repeats = 7 if quick else 21
    torch.manual_seed(0)
    results = []
    d_model, chunk = 64, 8
    psm = (
        TransformerPSM(
            TransformerPSMConfig(
                vocab_size=256, d_model=d_model, n_heads=4, chunk_size=chunk, batch_invariant=False
            )
        )
        .to(dev)
        .eval()
    )
    transformer = CausalTransformerLM(256, d_model, 4, 2).to(dev).eval()
    lengths = [256, 4096] if quick else [256, 4096, 32768]
    psm_steps = {}
    for length in lengths:
        psm_step = _psm_stepper(psm, length, dev)
        psm_steps[length] = psm_step
        results.append(
            compare(
                _transformer_stepper(transformer, length, dev),
                psm_step,
                name=f"streaming step at position {length} (d={d_model}, PSM c={chunk})",
                label_a="transformer + KV cache",
                label_b="Transformer-PSM stream",
                repeats=repeats * chunk,
                device=dev,
                meta={"position": length},
            )
        )
    results.append(
        compare(
            psm_steps[lengths[-1]],
            psm_steps[lengths[0]],
            name=f"Transformer-PSM step: position {lengths[-1]} vs {lengths[0]} (flat = 1)",
            label_a=f"PSM at {lengths[-1]}",
            label_b=f"PSM at {lengths[0]}",
            repeats=repeats * chunk,
            device=dev,
        )
    )
    gen = torch.Generator().manual_seed(0)
    shape = (4, 1024 if quick else 4096, 2, 16)
    k, v, g = (torch.randn(*shape, generator=gen).to(dev) for _ in range(3))
    steps = gla_steps(k, v, torch.nn.functional.logsigmoid(g))
    for label, method in (("generic PSM tree", "tree"), ("Python loop", "loop")):
        results.append(
            compare(
                lambda m=method: affine_states(steps, method=m),
                lambda: affine_states(steps, method="linear_scan"),
                name=f"GLA scan {list(shape)} dk=dv=16 fp32",
                label_a=label,
                label_b="kernelkit.linear_scan",
                repeats=repeats,
                device=dev,
            )
        )
    return results
