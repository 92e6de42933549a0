"""Switch transformers MoE models from per-token TopK to SeqTopK, and back.

What ``patch`` changes, and why:

- Each router (``OlmoeTopKRouter``, ``Qwen2MoeTopKRouter``, ``Qwen3MoeTopKRouter``,
  ``MixtralTopKRouter``) gets an instance-level ``forward`` that computes the same softmax
  probabilities, selects with SeqTopK (offline over the whole call, or online with a per-layer
  score cache) and returns ``(router_logits, weights [N, E], indices [N, E])``: a dense routing
  map, weight 0 on the experts a token did not get, with real indices only (no sentinel).
  The model's own renormalisation rule is kept: Mixtral always renormalises over the token's
  selected experts, the others do so when ``norm_topk_prob`` is set.
- The router's block-mate experts module gets an instance-level ``forward`` that runs only the
  selected (token, expert) pairs, through whichever experts implementation the config names
  (eager, batched_mm, grouped_mm, ...): a token with k_t experts costs k_t expert calls, and no
  zero-weight slot is computed.
- MoE blocks never see the attention mask, so a forward pre-hook on the decoder stack records
  the batch shape and the mask of the current tokens (and, online, aligns the score caches with
  the generation cache: reset on a fresh prompt, cropped when the cache is shorter, reordered when
  beam search reorders the cache).
- When the model returns an auxiliary load-balancing loss (``output_router_logits=True``), a
  forward hook replaces it with one computed from the routing that actually happened (transformers
  recomputes a fixed top-k from the logits) and corrects ``loss`` by the difference.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from kernelkit.validation import check_ndim, check_tensor
from seqtopk.online import OnlineRoutingState
from seqtopk.selection import _select_dense, check_selection, resolve_bounds, resolve_path

__all__ = ["SUPPORTED_MODEL_TYPES", "is_patched", "load_balancing_loss", "patch", "unpatch"]

# model_type -> (module, router class name, whether the model always renormalises)
_ROUTERS = {
    "olmoe": ("transformers.models.olmoe.modeling_olmoe", "OlmoeTopKRouter", False),
    "qwen2_moe": ("transformers.models.qwen2_moe.modeling_qwen2_moe", "Qwen2MoeTopKRouter", False),
    "qwen3_moe": ("transformers.models.qwen3_moe.modeling_qwen3_moe", "Qwen3MoeTopKRouter", False),
    "mixtral": ("transformers.models.mixtral.modeling_mixtral", "MixtralTopKRouter", True),
}
SUPPORTED_MODEL_TYPES = tuple(_ROUTERS)
_ATTRIBUTE = "_seqtopk_routing"


@dataclass
class _Routing:
    """Everything one patched model needs between its hooks and its routers."""

    mode: Literal["offline", "online"]
    k: int
    min_per_token: int
    max_per_token: int
    routers: list[nn.Module]
    renormalize: bool
    # Mixtral's router returns float32 weights; the others cast to the logits' dtype.
    float_weights: bool
    handles: list[Any] = field(default_factory=list)
    batch: int = 0
    tokens: int = 0
    valid: torch.Tensor | None = None
    past_length: int = 0
    states: dict[int, OnlineRoutingState] = field(default_factory=dict)
    records: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = field(default_factory=list)
    # Router index -> its block's selection [N, E], handed from the router to the experts.
    pending: dict[int, torch.Tensor] = field(default_factory=dict)
    experts: list[nn.Module] = field(default_factory=list)

    def reorder(self, index: torch.Tensor) -> None:
        for state in self.states.values():
            state.reorder(index)


def _model_type(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in _ROUTERS:
        raise ValueError(
            f"model must be a transformers model of type {SUPPORTED_MODEL_TYPES}, got "
            f"{type(model).__name__} with model_type={model_type!r}"
        )
    return model_type


def _decoder(model: nn.Module) -> nn.Module:
    base = getattr(model, "base_model", model)
    if not hasattr(base, "layers"):
        raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")
    return base


def _current_mask(routing: _Routing, kwargs: dict[str, Any], args: tuple) -> None:
    input_ids = kwargs.get("input_ids", args[0] if args else None)
    embeds = kwargs.get("inputs_embeds")
    reference = input_ids if input_ids is not None else embeds
    if reference is None:
        raise ValueError("the patched model needs input_ids or inputs_embeds")
    batch, tokens = reference.shape[0], reference.shape[1]
    mask = kwargs.get("attention_mask")
    if mask is None:
        valid = torch.ones(batch, tokens, dtype=torch.bool, device=reference.device)
    elif isinstance(mask, torch.Tensor) and mask.ndim == 2 and mask.shape[0] == batch:
        if mask.shape[1] < tokens:
            raise ValueError(
                f"attention_mask covers {mask.shape[1]} positions, fewer than the {tokens} inputs"
            )
        valid = mask[:, mask.shape[1] - tokens :].bool()
    else:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(
            "SeqTopK routing needs a 2-D attention_mask [batch, positions] of 0/1 (it decides "
            f"which tokens take budget), got {shape}"
        )
    routing.batch, routing.tokens, routing.valid = batch, tokens, valid


def _sync_states(routing: _Routing, cache: Any) -> None:
    past = int(cache.get_seq_length()) if cache is not None else 0
    routing.past_length = past
    if past == 0:
        routing.states.clear()
    for index, state in list(routing.states.items()):
        if state.batch != routing.batch:
            raise ValueError(
                f"the online SeqTopK cache holds {state.batch} sequences but the "
                f"input has {routing.batch}; start a new prompt without a cache"
            )
        if state.length > past:
            state.crop(past)
        elif state.length < past:
            raise ValueError(
                f"the online SeqTopK cache of router {index} covers {state.length} positions but "
                f"the generation cache covers {past}: the cache was filled without SeqTopK routing"
            )
    if past and not routing.states:
        raise ValueError(
            f"the generation cache already covers {past} positions that were not routed online; "
            "online SeqTopK must see the prompt"
        )
    if cache is not None and not getattr(cache, "_seqtopk_follows", False):
        original = cache.reorder_cache

        def reorder_cache(beam_idx: torch.Tensor, _original=original) -> None:
            _original(beam_idx)
            live = getattr(cache, "_seqtopk_routing", None)
            if live is not None:
                live.reorder(beam_idx)

        cache.reorder_cache = reorder_cache
        cache._seqtopk_follows = True
    if cache is not None:
        cache._seqtopk_routing = routing


def _pre_hook(routing: _Routing):
    def hook(module: nn.Module, args: tuple, kwargs: dict[str, Any]):
        _current_mask(routing, kwargs, args)
        routing.records.clear()
        if routing.mode == "online":
            _sync_states(routing, kwargs.get("cache", kwargs.get("past_key_values")))
        return None

    return hook


def _router_forward(router: nn.Module, index: int, routing: _Routing, renormalize: bool):
    def forward(hidden_states: torch.Tensor):
        hidden = hidden_states.reshape(-1, router.hidden_dim)
        logits = F.linear(hidden, router.weight)
        probs = torch.softmax(logits.float(), dim=-1)
        batch, tokens = routing.batch, routing.tokens
        if batch * tokens != hidden.shape[0]:
            raise RuntimeError(
                f"router received {hidden.shape[0]} tokens but the decoder input had "
                f"{batch}x{tokens}; call the model through its decoder so the hooks run"
            )
        grid = probs.view(batch, tokens, -1)
        num_experts = grid.shape[-1]
        # No input re-validation here: the bounds were checked by ``patch``, the scores are our
        # own softmax.
        if routing.mode == "offline":
            selected = _select_dense(
                grid.detach(),
                routing.valid,
                routing.k,
                routing.min_per_token,
                routing.max_per_token,
                path=resolve_path("auto", grid.device),
            )
        else:
            state = routing.states.get(index)
            if state is None:
                state = OnlineRoutingState.empty(
                    batch,
                    num_experts,
                    routing.k,
                    routing.min_per_token,
                    routing.max_per_token,
                    device=grid.device,
                )
                routing.states[index] = state
            selected = state.route(grid.detach(), routing.valid)
        weights = grid * selected.to(grid.dtype)
        if renormalize:
            total = weights.sum(dim=-1, keepdim=True)
            weights = weights / torch.where(total > 0, total, torch.ones_like(total))
        routing.records.append((grid, selected, routing.valid))
        flat_selected = selected.reshape(-1, num_experts)
        routing.pending[index] = flat_selected
        weights = weights.reshape(-1, num_experts)
        if not routing.float_weights:
            weights = weights.to(logits.dtype)
        # A dense routing map: every expert in every token's slots, weight 0 where not selected.
        # It is what the MoE block hands the experts module; the patched experts forward reads
        # the selected pairs from ``routing.pending`` and never computes a zero-weight slot.
        indices = torch.arange(num_experts, device=grid.device).expand(hidden.shape[0], -1)
        return logits, weights, indices

    return forward


def _sum_per_token(
    rows: torch.Tensor, token: torch.Tensor, selected: torch.Tensor, slots: int, by_slot: bool
) -> torch.Tensor:
    """Sum the weighted pair outputs ``rows`` [S, H] into their tokens: float32 [N, H].

    ``index_add_`` is one pass and deterministic on the CPU; on other devices it adds with
    atomics in no fixed order, so there (``by_slot``) each pair is written to its own slot of a
    ``[N, U, H]`` buffer (a pair's slot is its place among its token's pairs, ``nonzero`` listing
    them token by token) and the slots are summed, as transformers' own reduction does.
    """
    dtype = torch.promote_types(rows.dtype, torch.float32)
    num_tokens, hidden = selected.shape[0], rows.shape[-1]
    if not by_slot:
        out = torch.zeros(num_tokens, hidden, dtype=dtype, device=rows.device)
        return out.index_add_(0, token, rows.to(dtype))
    counts = selected.sum(dim=-1)
    slot = torch.arange(token.numel(), device=token.device) - (counts.cumsum(0) - counts)[token]
    out = torch.zeros(num_tokens, slots, hidden, dtype=dtype, device=rows.device)
    return out.index_put((token, slot), rows.to(dtype)).sum(dim=1)


def _experts_forward(experts: nn.Module, index: int, routing: _Routing):
    """Padding-free dispatch around ``experts``' own forward (eager, batched_mm, grouped_mm...).

    The selected (token, expert) pairs are flattened into ``S`` rows of one expert each and run
    through the experts module's configured implementation as a top-1 routing over the gathered
    hidden states, so each implementation builds its own expert -> rows lists from them (a loop
    over hit experts, a batched matmul, a sort plus grouped matmul); the weighted row outputs are
    then summed per token (:func:`_sum_per_token`), in float32 like transformers' own reduction.
    """
    implementation = type(experts).forward

    def forward(
        hidden_states: torch.Tensor, top_k_index: torch.Tensor, top_k_weights: torch.Tensor
    ):
        selected = routing.pending.pop(index, None)
        if selected is None or selected.shape != top_k_weights.shape:
            # Not called by the patched block right after its router: run the routing map as is.
            return implementation(experts, hidden_states, top_k_index, top_k_weights)
        token, expert = selected.nonzero(as_tuple=True)
        if not token.numel():
            return torch.zeros_like(hidden_states)
        rows = implementation(
            experts,
            hidden_states[token],
            top_k_index[token, expert].unsqueeze(-1),
            top_k_weights[token, expert].unsqueeze(-1),
        )
        by_slot = hidden_states.device.type != "cpu"
        out = _sum_per_token(rows, token, selected, routing.max_per_token, by_slot)
        return out.to(hidden_states.dtype)

    return forward


def load_balancing_loss(
    records: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> torch.Tensor:
    """Switch-style balance loss from the routing that happened.

    ``records`` holds one ``(probs [B, T, E], selected [B, T, E], valid [B, T])`` per MoE layer.
    As in transformers, the expert load and the mean router probability are averaged over the
    valid tokens of all layers and ``E * sum_e load_e * prob_e`` is returned; here the load counts
    the selected pairs (each valid token's share sums to its own count, k on average), not a fixed
    top-k recomputed from the logits. With per-token TopK both definitions agree.
    """
    if not records:
        raise ValueError("records must hold at least one (probs, selected, valid) layer record")
    for index, record in enumerate(records):
        if not isinstance(record, tuple | list) or len(record) != 3:
            raise TypeError(
                f"records[{index}] must be a (probs, selected, valid) tuple, got "
                f"{type(record).__name__}"
            )
        probs, selected, valid = record
        check_selection("selected", selected, "probs", probs)
        check_ndim("probs", probs, 3)
        check_tensor("valid", valid)
        if valid.dtype != torch.bool or valid.shape != probs.shape[:2]:
            raise ValueError(
                f"valid must be a boolean mask of shape {tuple(probs.shape[:2])} (records[{index}]),"
                f" got {valid.dtype} {tuple(valid.shape)}"
            )
        if probs.shape[-1] != records[0][0].shape[-1]:
            raise ValueError(
                f"probs must have the same number of experts in every record, got "
                f"{probs.shape[-1]} in records[{index}] and {records[0][0].shape[-1]} in records[0]"
            )
    num_experts = records[0][0].shape[-1]
    load = torch.zeros(num_experts, device=records[0][0].device)
    prob = torch.zeros(num_experts, device=records[0][0].device)
    rows = torch.zeros((), device=records[0][0].device)
    for probs, selected, valid in records:
        weight = valid.unsqueeze(-1).float()
        load = load + (selected.float() * weight).sum(dim=(0, 1))
        prob = prob + (probs.float() * weight).sum(dim=(0, 1))
        rows = rows + weight.sum()
    rows = rows.clamp_min(1.0)
    return num_experts * torch.sum((load / rows) * (prob / rows))


def _aux_hook(routing: _Routing, coefficient: float):
    def hook(module: nn.Module, args: tuple, output: Any):
        old = getattr(output, "aux_loss", None)
        if old is None or not routing.records:
            return output
        new = load_balancing_loss(routing.records).to(old.device)
        output.aux_loss = new
        if getattr(output, "loss", None) is not None:
            output.loss = output.loss + coefficient * (new - old)
        return output

    return hook


def is_patched(model: nn.Module) -> bool:
    """Whether ``patch`` has been applied to ``model`` (and not undone)."""
    return getattr(model, _ATTRIBUTE, None) is not None


def patch(
    model: nn.Module,
    k: int | None = None,
    mode: Literal["offline", "online"] = "offline",
    min_per_token: int = 1,
    max_per_token: int | None = None,
) -> nn.Module:
    """Route ``model``'s MoE layers with SeqTopK, in place; returns ``model``.

    Args:
        model: a transformers OLMoE, Qwen2-MoE (Qwen1.5-MoE), Qwen3-MoE or Mixtral model (the
            causal-LM head model or its bare decoder).
        k: average experts per token (default: the model's ``num_experts_per_tok``).
        mode: ``"offline"`` ranks all tokens of each call together (training, prefill);
            ``"online"`` routes token by token with a per-layer score cache that follows the
            generation cache (causal; for decoding and causal evaluation).
        min_per_token, max_per_token: per-token bounds L and U (default 1 and ``min(k + 2, E)``).

    Raises ``ValueError`` for an unsupported model, a model already patched, or infeasible bounds.
    """
    model_type = _model_type(model)
    if is_patched(model):
        raise ValueError("model is already patched with SeqTopK; call seqtopk.unpatch(model) first")
    if mode not in ("offline", "online"):
        raise ValueError(f"mode must be 'offline' or 'online', got {mode!r}")
    module_name, class_name, always_renormalize = _ROUTERS[model_type]
    router_class = getattr(importlib.import_module(module_name), class_name)
    routers = [m for m in model.modules() if isinstance(m, router_class)]
    if not routers:
        raise ValueError(f"model of type {model_type!r} has no {class_name} modules to patch")
    # Each MoE block holds its router as ``gate`` next to its ``experts``; they pair by block.
    blocks = {
        id(m.gate): m for m in model.modules() if isinstance(getattr(m, "gate", None), nn.Module)
    }
    if any(
        id(router) not in blocks or not hasattr(blocks[id(router)], "experts") for router in routers
    ):
        raise ValueError(f"every {class_name} must sit in a block beside its experts module")
    experts_modules = [blocks[id(router)].experts for router in routers]
    if any("forward" in vars(module) for module in (*routers, *experts_modules)):
        raise ValueError(
            "a router or experts module of this model already has its forward replaced (is it "
            "shared with another patched model?); unpatch that model first"
        )
    config = model.config
    k = config.num_experts_per_tok if k is None else k
    k, low, high = resolve_bounds(k, routers[0].num_experts, min_per_token, max_per_token)
    renormalize = always_renormalize or bool(getattr(config, "norm_topk_prob", False))
    routing = _Routing(mode, k, low, high, routers, renormalize, float_weights=always_renormalize)
    decoder = _decoder(model)
    routing.handles.append(decoder.register_forward_pre_hook(_pre_hook(routing), with_kwargs=True))
    coefficient = getattr(model, "router_aux_loss_coef", None)
    if coefficient is not None:
        routing.handles.append(model.register_forward_hook(_aux_hook(routing, float(coefficient))))
    for index, router in enumerate(routers):
        router.forward = _router_forward(router, index, routing, renormalize)
    for index, experts in enumerate(experts_modules):
        experts.forward = _experts_forward(experts, index, routing)
    routing.experts = experts_modules
    setattr(model, _ATTRIBUTE, routing)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Undo :func:`patch`: the routers, hooks and caches go back to transformers' TopK."""
    routing = getattr(model, _ATTRIBUTE, None)
    if routing is None:
        raise ValueError(f"{type(model).__name__} is not patched with SeqTopK")
    for handle in routing.handles:
        handle.remove()
    for module in (*routing.routers, *routing.experts):
        del module.forward
    routing.states.clear()
    routing.pending.clear()
    routing.records.clear()
    delattr(model, _ATTRIBUTE)
    return model
