"""Routing overhead of SeqTopK versus TopK, as ratios measured side by side.

For two OLMoE-shaped MoE layers (router + experts, ``grouped_mm``): the issue's tiny one and one
with OLMoE-1B-7B's real shape (hidden 2048, 64 experts of width 1024, K = 8):

- prefill: the SeqTopK-patched layer (paper bounds L = 1, U = K + 2) versus TopK;
- prefill with U = K: the same selection code but K slots per token, so the ratio is the routing
  work alone, without the compute of the ``U - K`` zero-weight slots a fixed-width experts call
  pays for;
- decode: one token through the online-patched layer (score cache of ``tokens`` positions,
  growing by one per call) versus the TopK layer, with U = K + 2 and with U = K;

and, first, selection alone: ``select_experts`` versus ``torch.topk`` per token; on CUDA also
the Triton selection kernel versus the torch path at B=8, T=4096 (``tools/gpu_check.sh``).

Added for issue 20 (beside the rows above): prompt routing alone, ``online_select`` (causal,
one vectorised pass) versus ``select_experts`` (offline) for 512- and 2048-token prompts; and
for the OLMoE-shaped layer a decode step with 4096 cached positions and a 512-token prompt
through the online-patched layer versus the offline-patched one.

The selection and prompt rows run the device's default path (numba on a CPU with
``seqtopk[fast]`` installed, Triton on CUDA) and, where that is not torch, the torch path
beside it; they cycle through distinct score tensors (see :func:`_rotating`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import torch
from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock

from kernelkit.bench import Comparison, compare
from seqtopk.online import ONLINE_IMPLS, online_select
from seqtopk.patching import patch
from seqtopk.selection import resolve_path, select_experts

__all__ = ["run"]

# Distinct score tensors the selection and prompt rows cycle through (see `_rotating`).
_FRESH_INPUTS = 16


def _olmoe_config(hidden: int, expert_hidden: int, experts: int, k: int):
    from transformers import OlmoeConfig

    config = OlmoeConfig(
        hidden_size=hidden,
        intermediate_size=expert_hidden,
        num_experts=experts,
        num_experts_per_tok=k,
        num_hidden_layers=1,
        num_attention_heads=4,
        vocab_size=32,
        eos_token_id=None,
        pad_token_id=None,
        bos_token_id=None,
    )
    config._experts_implementation = "grouped_mm"
    return config


class _Layer(torch.nn.Module):
    """One MoE block behind a decoder-like wrapper, so ``patch`` finds its config and hooks."""

    def __init__(self, config, shared: OlmoeSparseMoeBlock | None = None):
        super().__init__()
        self.config = config
        with torch.device("meta"):
            block = OlmoeSparseMoeBlock(config)
        if shared is not None:
            # Every variant shares one set of weights but has its own modules, whose forwards
            # ``patch`` replaces per model.
            block.gate.weight = shared.gate.weight
            block.experts.gate_up_proj = shared.experts.gate_up_proj
            block.experts.down_proj = shared.experts.down_proj
        self.layers = torch.nn.ModuleList([block])

    def forward(self, inputs_embeds, attention_mask=None, past_key_values=None):
        return self.layers[0](inputs_embeds)


class _CacheLength:
    """Stands in for the generation cache: the online hooks read its length to align."""

    def __init__(self):
        self.length = 0

    def get_seq_length(self) -> int:
        return self.length

    def reorder_cache(self, beam_idx: torch.Tensor) -> None:
        """No beams here; the hooks wrap this method to follow reordering."""


def _decode_step(layer, cache: _CacheLength, token: torch.Tensor):
    """One decode step of ``layer`` on ``token`` that grows ``cache`` by one position."""

    def step():
        with torch.no_grad():
            layer(inputs_embeds=token, past_key_values=cache)
        cache.length += 1

    return step


def _layer_comparisons(
    label: str,
    hidden: int,
    expert_hidden: int,
    experts: int,
    k: int,
    batch: int,
    tokens: int,
    repeats: int,
    dev: torch.device,
    threads: int | None,
    long_cache: int | None = None,
    prompt: int | None = None,
) -> list[Comparison]:
    config = _olmoe_config(hidden, expert_hidden, experts, k)
    gen = torch.Generator(device=dev).manual_seed(0)
    with torch.no_grad():
        topk = _Layer(config)
        block = topk.layers[0]
        block.to_empty(device=dev)
        for parameter in block.parameters():
            parameter.normal_(std=0.02, generator=gen)
    shared = block
    seqtopk = patch(_Layer(config, shared), k=k)
    capped = patch(_Layer(config, shared), k=k, max_per_token=k)
    online = patch(_Layer(config, shared), k=k, mode="online")
    x = torch.randn(batch, tokens, hidden, device=dev, generator=gen)
    shape = f"{label}: hidden {hidden}, E={experts} of width {expert_hidden}, K={k}"
    common = {"repeats": repeats, "device": dev, "threads": threads}

    def forward(layer, inputs, **kwargs):
        def call():
            with torch.no_grad():
                layer(inputs_embeds=inputs, **kwargs)

        return call

    results = [
        compare(
            forward(seqtopk, x),
            forward(topk, x),
            name=f"prefill B={batch} T={tokens}, {shape}",
            label_a="SeqTopK L=1 U=K+2",
            label_b="TopK",
            **common,
        ),
        compare(
            forward(capped, x),
            forward(topk, x),
            name=f"prefill B={batch} T={tokens}, {shape}, U=K (no zero-weight slots)",
            label_a="SeqTopK L=1 U=K",
            label_b="TopK",
            **common,
        ),
    ]
    online_capped = patch(_Layer(config, shared), k=k, max_per_token=k, mode="online")
    token = x[:, :1]
    for layer, bounds in ((online, "L=1 U=K+2"), (online_capped, "L=1 U=K")):
        cache = _CacheLength()
        with torch.no_grad():
            layer(inputs_embeds=x, past_key_values=cache)
        cache.length = tokens

        results.append(
            compare(
                _decode_step(layer, cache, token),
                forward(topk, token),
                name=f"decode one token, cache {tokens}+ positions, B={batch}, {shape}, {bounds}",
                label_a=f"online SeqTopK {bounds}",
                label_b="TopK",
                **{**common, "repeats": repeats * 4},
            )
        )
    if long_cache is not None:
        # The score cache of `long_cache` earlier positions is filled from random router scores
        # (routing them through the experts would only cost time): the decode step's routing
        # work depends on the cache, the experts' on the one new token.
        scores = torch.softmax(
            torch.randn(batch, long_cache, experts, device=dev, generator=gen), dim=-1
        )
        _, state = online_select(scores, k)
        long_online = patch(_Layer(config, shared), k=k, mode="online")
        long_online._seqtopk_routing.states[0] = state
        cache = _CacheLength()
        cache.length = long_cache

        results.append(
            compare(
                _decode_step(long_online, cache, token),
                forward(topk, token),
                name=f"decode one token, cache {long_cache}+ positions, B={batch}, {shape}, "
                "L=1 U=K+2",
                label_a="online SeqTopK L=1 U=K+2",
                label_b="TopK",
                **{**common, "repeats": repeats * 4},
            )
        )
    if prompt is not None:
        xp = torch.randn(batch, prompt, hidden, device=dev, generator=gen)
        fresh = _CacheLength()  # length 0: every call is a new prompt, routed online from scratch
        results.append(
            compare(
                forward(online, xp, past_key_values=fresh),
                forward(seqtopk, xp),
                name=f"prompt B={batch} T={prompt} through the layer, {shape}, L=1 U=K+2",
                label_a="online (causal) SeqTopK",
                label_b="offline SeqTopK",
                **common,
            )
        )
    return results


def _rotating(inputs: list[torch.Tensor], fn) -> Callable[[], object]:
    """A callable applying ``fn`` to the next of ``inputs`` on each call.

    A router sees new scores on every call; one input timed over and over lets the CPU's branch
    predictor learn its comparisons (``torch.topk`` at B=2, T=256 ran 4.7x faster on a repeated
    input than on fresh ones, the numba ranking 4x), which is not what a model pays.
    """
    position = itertools.count()
    return lambda: fn(inputs[next(position) % len(inputs)])


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = 1 if dev.type == "cpu" else None
    repeats = 5 if quick else 20
    batch, tokens = (2, 256) if quick else (8, 1024)
    # The default path on this device, and the torch path beside it where they differ.
    default = resolve_path("auto", dev)
    paths = [default] + (["torch"] if default != "torch" else [])
    # Selection alone runs first: once the 1.6 GB layer below has been freed, small allocations
    # on this CPU were seen to run several times slower.
    gen = torch.Generator(device=dev).manual_seed(1)
    fresh = [
        torch.softmax(torch.randn(batch, tokens, 64, device=dev, generator=gen), -1)
        for _ in range(_FRESH_INPUTS)
    ]
    results = [
        compare(
            _rotating(fresh, lambda probs, path=path: select_experts(probs, 8, impl=path)),
            _rotating(fresh, lambda probs: torch.topk(probs, 8, dim=-1)),
            name=f"selection alone B={batch} T={tokens} E=64 K=8, fresh scores each call",
            label_a=f"select_experts impl={path}",
            label_b="torch.topk",
            repeats=repeats * 4,
            device=dev,
            threads=threads,
        )
        for path in paths
    ]
    if dev.type == "cuda":
        # The fused Triton selection against its torch reference path, on the GPU only (the
        # CPU runs Triton only in its interpreter). Long sequences: one program per sequence.
        long_probs = torch.softmax(torch.randn(8, 4096, 64, device=dev, generator=gen), -1)
        results.append(
            compare(
                lambda: select_experts(long_probs, 8, impl="triton"),
                lambda: select_experts(long_probs, 8, impl="torch"),
                name="selection B=8 T=4096 E=64 K=8, Triton kernel vs torch path",
                label_a="select_experts impl=triton",
                label_b="select_experts impl=torch",
                repeats=repeats * 4,
                device=dev,
                threads=threads,
            )
        )
    results += _layer_comparisons("tiny", 256, 128, 64, 8, batch, tokens, repeats, dev, threads)
    for length in (512, 2048):
        prompts = [
            torch.softmax(torch.randn(batch, length, 64, device=dev, generator=gen), dim=-1)
            for _ in range(_FRESH_INPUTS // 2)
        ]
        for path in paths:
            online_path = path if path in ONLINE_IMPLS else "torch"
            results.append(
                compare(
                    _rotating(prompts, lambda p, o=online_path: online_select(p, 8, impl=o)),
                    _rotating(prompts, lambda p, path=path: select_experts(p, 8, impl=path)),
                    name=f"prompt routing alone B={batch} T={length} E=64 K=8 L=1 U=K+2",
                    label_a=f"online_select impl={online_path} (causal, one pass)",
                    label_b=f"select_experts impl={path} (offline)",
                    repeats=repeats,
                    device=dev,
                    threads=threads,
                )
            )
    real_batch, real_tokens = (1, 128) if quick else (4, 512)
    results += _layer_comparisons(
        "OLMoE-1B-7B shape",
        2048,
        1024,
        64,
        8,
        real_batch,
        real_tokens,
        max(3, repeats // 2),
        dev,
        threads,
        long_cache=4096,
        prompt=512,
    )
    return results
