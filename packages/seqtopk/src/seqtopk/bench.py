"""Routing overhead of SeqTopK versus TopK, as ratios measured side by side.

- a tiny OLMoE-shaped MoE layer (router + experts), prefill: SeqTopK-patched versus TopK;
- the same layer decoding one token with the online score cache versus TopK;
- selection alone: ``select_experts`` versus ``torch.topk`` per token.
"""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from seqtopk.online import OnlineRoutingState
from seqtopk.patching import patch
from seqtopk.selection import select_experts

__all__ = ["run"]


def _olmoe_block(hidden: int, experts: int, k: int, device: torch.device):
    from transformers import OlmoeConfig
    from transformers.models.olmoe.modeling_olmoe import OlmoeSparseMoeBlock

    config = OlmoeConfig(
        hidden_size=hidden,
        intermediate_size=hidden // 2,
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
    block = OlmoeSparseMoeBlock(config).to(device).eval()
    for parameter in block.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    return config, block


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    threads = 1 if dev.type == "cpu" else None
    batch, tokens = (2, 256) if quick else (8, 1024)
    hidden, experts, k = (256, 64, 8) if quick else (1024, 64, 8)
    repeats = 5 if quick else 20
    gen = torch.Generator(device=dev).manual_seed(0)
    results = []

    config, block = _olmoe_block(hidden, experts, k, dev)
    x = torch.randn(batch, tokens, hidden, device=dev, generator=gen)
    router = block.gate
    topk_forward = router.forward

    class _Holder(torch.nn.Module):
        """Carries the config and decoder pre-hook that ``patch`` expects around one block."""

        def __init__(self):
            super().__init__()
            self.config = config
            self.layers = torch.nn.ModuleList([block])

        def forward(self, inputs_embeds, attention_mask=None):
            return self.layers[0](inputs_embeds)

    holder = _Holder()
    patch(holder, k=k)
    seq_forward = router.forward

    def with_router(forward):
        def call():
            router.forward = forward
            with torch.no_grad():
                holder(inputs_embeds=x)

        return call

    results.append(
        compare(
            with_router(seq_forward),
            with_router(topk_forward),
            name=f"MoE layer prefill B={batch} T={tokens} E={experts} K={k}",
            label_a="SeqTopK",
            label_b="TopK",
            repeats=repeats,
            device=dev,
            threads=threads,
        )
    )

    probs = torch.softmax(torch.randn(batch, tokens, experts, device=dev, generator=gen), -1)
    results.append(
        compare(
            lambda: select_experts(probs, k),
            lambda: torch.topk(probs, k, dim=-1),
            name=f"selection alone B={batch} T={tokens} E={experts} K={k}",
            label_a="select_experts",
            label_b="torch.topk",
            repeats=repeats,
            device=dev,
            threads=threads,
        )
    )

    state = OnlineRoutingState.empty(batch, experts, k, 1, k + 2, device=dev)
    for t in range(tokens):
        state.step(probs[:, t], torch.ones(batch, dtype=torch.bool, device=dev))
    token = x[:, :1]
    current = probs[:, 0]
    valid = torch.ones(batch, dtype=torch.bool, device=dev)

    def decode_seqtopk():
        with torch.no_grad():
            router.forward = topk_forward
            block(token)
            snapshot = (state.history, state.valid, state.counts, state.sorted_past)
            state.step(current, valid)
            state.history, state.valid, state.counts, state.sorted_past = snapshot

    def decode_topk():
        with torch.no_grad():
            router.forward = topk_forward
            block(token)

    results.append(
        compare(
            decode_seqtopk,
            decode_topk,
            name=f"MoE layer decode step, cache {tokens} tokens, E={experts} K={k}",
            label_a="TopK layer + online SeqTopK step",
            label_b="TopK layer",
            repeats=repeats * 4,
            device=dev,
            threads=threads,
        )
    )
    return results
