"""Offline SeqTopK selection: a per-sequence budget of k experts per valid token.

For one sequence with ``n`` valid tokens the selected (token, expert) pairs are the ``n * k``
highest router probabilities subject to every valid token getting between ``min_per_token`` (L)
and ``max_per_token`` (U) experts. The greedy that realises this first gives every valid token its
top-L experts, then walks the remaining pairs in the order (probability descending, token
ascending, expert ascending) and takes each one whose token has fewer than U experts, until the
budget is spent. Padding tokens get no experts and take no budget; sequences never compete.

Four implementations share one contract: :func:`select_experts_reference` (the greedy written
as loops, the spec), a vectorised torch path (a float per-token top-U, re-ranked on tie-free keys only
for tokens with ties, then one ``kthvalue`` over the sequence's ``T * (U - L)`` candidates; runs
on any device; see :func:`_select_ranked`), a Triton kernel (:mod:`seqtopk._triton_select`: the per-token top-U
in torch, then one program per sequence finds the budget's threshold by bisection and resolves
ties in order) and a numba kernel for CPU tensors (:mod:`seqtopk._numba_routing`, ``pip install
'seqtopk[fast]'``: the same two steps in one compiled pass, with no [B, T, E] temporaries);
``impl`` picks one, and ``"auto"`` takes Triton for CUDA tensors and numba for CPU tensors when
each imports.
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from kernelkit.backend import IMPLS as KERNELKIT_IMPLS
from kernelkit.backend import resolve_impl
from kernelkit.validation import (
    check_finite,
    check_floating,
    check_int_in_range,
    check_ndim,
    check_tensor,
)

__all__ = [
    "IMPLS",
    "numba_available",
    "resolve_bounds",
    "routing_weights",
    "select_experts",
    "select_experts_reference",
    "selection_to_indices",
]


IMPLS = (*KERNELKIT_IMPLS, "numba")


@functools.cache
def numba_available() -> bool:
    """True when numba imports, so ``impl="auto"`` routes CPU tensors through the numba kernels
    (``pip install 'seqtopk[fast]'``)."""
    return importlib.util.find_spec("numba") is not None


def _numba_kernels():
    from seqtopk import _numba_routing  # lazy: numba is an optional dependency

    return _numba_routing


def resolve_path(impl: str, device: torch.device) -> str:
    """Turn ``impl`` into the path that runs for tensors on ``device``: ``"reference"``,
    ``"torch"``, ``"triton"`` or ``"numba"``.

    ``"auto"`` is Triton for CUDA tensors (when Triton imports), numba for CPU tensors (when numba
    imports) and torch otherwise. Raises ``ValueError`` for an unknown name and ``RuntimeError``
    when the named path cannot run on ``device``.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "numba":
        if not numba_available():
            raise RuntimeError("impl='numba' needs the numba package: pip install 'seqtopk[fast]'")
        if device.type != "cpu":
            raise RuntimeError(f"impl='numba' needs CPU tensors, got device {device}")
        return "numba"
    if impl == "auto" and device.type == "cpu" and numba_available():
        return "numba"
    return resolve_impl(impl, device)


def resolve_bounds(
    k: object, num_experts: int, min_per_token: object = 1, max_per_token: object = None
) -> tuple[int, int, int]:
    """Check ``k`` and the per-token bounds against ``num_experts``; return ``(k, L, U)``.

    ``max_per_token=None`` means ``min(k + 2, num_experts)`` (the paper's cap of K+2, limited by
    the number of experts that exist). The budget ``k`` per valid token is feasible exactly when
    ``L <= k <= U <= num_experts``; anything else raises ``ValueError`` saying which bound fails.
    """
    check_int_in_range("num_experts", num_experts, 1)
    for name, value in (("k", k), ("min_per_token", min_per_token)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if not 1 <= k <= num_experts:
        raise ValueError(f"k must be in [1, num_experts={num_experts}], got {k}")
    if max_per_token is None:
        max_per_token = min(k + 2, num_experts)
    if isinstance(max_per_token, bool) or not isinstance(max_per_token, int):
        raise TypeError(
            f"max_per_token must be an int or None, got {type(max_per_token).__name__} "
            f"({max_per_token!r})"
        )
    if min_per_token < 0:
        raise ValueError(f"min_per_token must be >= 0, got {min_per_token}")
    if max_per_token > num_experts:
        raise ValueError(f"max_per_token must be <= num_experts={num_experts}, got {max_per_token}")
    if not min_per_token <= k <= max_per_token:
        raise ValueError(
            "the budget of k experts per valid token is infeasible with these bounds: need "
            f"min_per_token <= k <= max_per_token, got min_per_token={min_per_token}, k={k}, "
            f"max_per_token={max_per_token}"
        )
    return k, min_per_token, max_per_token


def check_selection(
    name: str, selected: object, scores_name: str, scores: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """A boolean selection mask and finite floating scores of one shape ``(..., E)``."""
    selected = check_tensor(name, selected)
    if selected.dtype != torch.bool:
        raise TypeError(f"{name} must be a boolean mask, got dtype {selected.dtype}")
    check_floating(scores_name, scores)
    check_finite(scores_name, scores)
    if selected.ndim < 1 or scores.shape != selected.shape:
        raise ValueError(
            f"{scores_name} and {name} must have the same shape (..., E), got "
            f"{tuple(scores.shape)} and {tuple(selected.shape)}"
        )
    return selected, scores


def _check_probs_and_mask(
    probs: object, attention_mask: object
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the inputs; return float32 scores and a boolean validity mask [B, T]."""
    probs = check_tensor("probs", probs)
    check_floating("probs", probs)
    check_ndim("probs", probs, 3)
    if probs.shape[-1] == 0:
        raise ValueError(f"probs must score at least one expert, got shape {tuple(probs.shape)}")
    # One sum in the common case (a NaN or an infinity makes it non-finite; an overflow of the
    # sum alone falls through to the exact check, measured 8x cheaper than isfinite().all() at
    # 32k scores); the NaN-specific message only once something is not finite.
    if (
        probs.numel()
        and not bool(torch.isfinite(probs.sum()))
        and not bool(torch.isfinite(probs).all())
    ):
        if torch.isnan(probs).any():
            bad = torch.isnan(probs).nonzero()[0].tolist()
            raise ValueError(f"probs must not contain NaN; found NaN at index {tuple(bad)}")
        check_finite("probs", probs)
    batch, length, _ = probs.shape
    if attention_mask is None:
        return probs.float(), torch.ones(batch, length, dtype=torch.bool, device=probs.device)
    attention_mask = check_tensor("attention_mask", attention_mask)
    if tuple(attention_mask.shape) != (batch, length):
        raise ValueError(
            f"attention_mask must have shape (batch, tokens) = {(batch, length)} to match probs, "
            f"got {tuple(attention_mask.shape)}"
        )
    if attention_mask.dtype != torch.bool:
        if attention_mask.is_floating_point() or attention_mask.is_complex():
            raise TypeError(
                f"attention_mask must be bool or integer 0/1, got dtype {attention_mask.dtype}"
            )
        if attention_mask.numel() and not bool(
            ((attention_mask == 0) | (attention_mask == 1)).all()
        ):
            raise ValueError(
                "attention_mask must hold only 0 and 1, got values "
                f"{sorted(set(attention_mask.unique().tolist()))}"
            )
    return probs.float(), attention_mask.to(device=probs.device).bool()


def _checked_inputs(probs, k, attention_mask, min_per_token, max_per_token):
    """Validated ``(scores, valid, k, low, high)`` shared by every selection entry point."""
    scores, valid = _check_probs_and_mask(probs, attention_mask)
    k, low, high = resolve_bounds(k, scores.shape[-1], min_per_token, max_per_token)
    return scores, valid, k, low, high


def select_experts_reference(
    probs: torch.Tensor,
    k: int,
    attention_mask: torch.Tensor | None = None,
    min_per_token: int = 1,
    max_per_token: int | None = None,
) -> torch.Tensor:
    """The selection greedy written as plain loops (slow; the specification)."""
    scores, valid, k, low, high = _checked_inputs(
        probs, k, attention_mask, min_per_token, max_per_token
    )
    batch, length, num_experts = scores.shape
    selected = torch.zeros(batch, length, num_experts, dtype=torch.bool)
    for b in range(batch):
        values = scores[b].tolist()
        tokens = [t for t in range(length) if bool(valid[b, t])]
        count = dict.fromkeys(tokens, 0)
        for t in tokens:
            by_score = sorted(range(num_experts), key=lambda e, row=values[t]: (-row[e], e))
            for e in by_score[:low]:
                selected[b, t, e] = True
            count[t] = low
        budget = len(tokens) * (k - low)
        rest = [(t, e) for t in tokens for e in range(num_experts) if not selected[b, t, e]]
        rest.sort(key=lambda pair: (-values[pair[0]][pair[1]], pair[0], pair[1]))
        for t, e in rest:
            if budget == 0:
                break
            if count[t] < high:
                selected[b, t, e] = True
                count[t] += 1
                budget -= 1
    return selected.to(probs.device)


def _order_keys(scores: torch.Tensor) -> torch.Tensor:
    """int64 keys whose order is the scores' order (float32 bits made monotone, high half)."""
    bits = (scores.float() + 0.0).view(torch.int32)  # + 0.0 turns -0.0 into +0.0
    monotone = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    return monotone.to(torch.int64) << 32


def _count(mask: torch.Tensor) -> torch.Tensor:
    """True entries along the last dim (a byte sum: several times faster than a bool sum)."""
    return mask.view(torch.uint8).sum(dim=-1, dtype=torch.int32)


def _ranked_top(scores: torch.Tensor, high: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's top-U ``(values, experts)`` [..., U] in the order (score desc, expert asc).

    A float ``topk`` ranks ties arbitrarily, so tokens whose top U+1 values hold a repeat (a tie
    inside the top U or across its boundary; ``-0.0 == 0.0`` counts) are re-ranked on tie-free
    int64 keys; for real-valued router scores that is almost never any.
    """
    num_experts = scores.shape[-1]
    values, experts = torch.topk(scores, min(high + 1, num_experts), dim=-1)
    tied = (values[..., 1:] == values[..., :-1]).any(dim=-1)
    values, experts = values[..., :high], experts[..., :high]
    if bool(tied.any()):
        where = tied.nonzero(as_tuple=True)
        expert_tiebreak = (2**32 - 1) - torch.arange(num_experts, device=scores.device)
        keys = _order_keys(scores[where]) | expert_tiebreak
        exact = torch.topk(keys, high, dim=-1).indices
        experts = experts.index_put(where, exact)
        values = values.index_put(where, scores[where].gather(-1, exact))
    return values, experts


def _select_ranked(
    scores: torch.Tensor, valid: torch.Tensor, k: int, low: int, high: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(experts [B, T, U], counts [B, T])``: each token gets the first ``counts`` of its ranking.

    A token's candidates compete in its own rank order, so what it wins is a prefix of its
    ranking: after forcing ranks < L, the greedy is "the (k - L) * n best candidates at ranks
    [L, U) of the sequence, in the order (score desc, token asc, rank asc)" (the cap U is built
    in). One selection (``kthvalue``) over the flat ``T * (U - L)`` candidates finds the
    threshold; padding tokens hold +inf on their first ``k - L`` candidate ranks and -inf on the
    rest, so one k serves every sequence and padding takes its slots but no budget. Ties at the
    threshold go to the lower (token, rank), by a running count, only when more than needed
    tie there.
    """
    batch, length, _ = scores.shape
    values, experts = _ranked_top(scores, high)
    width, extra = high - low, k - low
    counts = valid.to(torch.int32) * low
    if width == 0 or extra == 0 or length == 0:
        return experts, counts
    if extra == width:  # k == U: every valid token gets exactly k
        return experts, valid.to(torch.int32) * k
    padding_row = torch.full((width,), -torch.inf, device=scores.device)
    padding_row[:extra] = torch.inf
    candidates = torch.where(valid.unsqueeze(-1), values[..., low:], padding_row)
    flat = candidates.view(batch, length * width)
    need = length * extra
    threshold = torch.kthvalue(flat, flat.shape[-1] - need + 1, dim=-1, keepdim=True).values
    taken = flat >= threshold
    if bool((_count(taken) > need).any()):
        above = flat > threshold
        ties = flat == threshold
        taken = above | (ties & (ties.cumsum(dim=-1) <= need - _count(above).unsqueeze(-1)))
    won = _count(taken.view(batch, length, width))
    return experts, counts + torch.where(valid, won, torch.zeros_like(won))


def _select_torch(
    scores: torch.Tensor, valid: torch.Tensor, k: int, low: int, high: int
) -> torch.Tensor:
    experts, counts = _select_ranked(scores, valid, k, low, high)
    by_rank = torch.arange(high, device=scores.device) < counts.unsqueeze(-1)
    selected = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return selected.scatter_(-1, experts, by_rank)


def _select_triton(
    scores: torch.Tensor, valid: torch.Tensor, k: int, low: int, high: int
) -> torch.Tensor:
    """The selection [B, T, E] with the sequence-level pick in :mod:`seqtopk._triton_select`
    (the per-token ranking as in :func:`_ranked_top`)."""
    from seqtopk._triton_select import select_candidates_triton  # lazy: see its docstring

    values, experts = _ranked_top(scores, high)
    counts = valid.long() * low
    if high > low and k > low:
        budget = valid.sum(dim=-1) * (k - low)
        counts = counts + select_candidates_triton(values[..., low:], valid, budget).sum(dim=-1)
    by_rank = torch.arange(high, device=scores.device) < counts.unsqueeze(-1)
    selected = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    return selected.scatter_(-1, experts, by_rank)


def _select_numba(
    scores: torch.Tensor, valid: torch.Tensor, k: int, low: int, high: int
) -> torch.Tensor:
    _, _, selected = _numba_kernels().select_offline(
        scores.detach().contiguous().numpy(), valid.contiguous().numpy(), k, low, high
    )
    return torch.from_numpy(selected)


def _select_dense(
    scores: torch.Tensor, valid: torch.Tensor, k: int, low: int, high: int, *, path: str
) -> torch.Tensor:
    """The selection mask by ``path`` (``"torch"``, ``"triton"`` or ``"numba"``, see
    :func:`resolve_path`); inputs already checked."""
    if path == "triton":
        return _select_triton(scores, valid, k, low, high)
    if path == "numba":
        return _select_numba(scores, valid, k, low, high)
    return _select_torch(scores, valid, k, low, high)


def select_experts(
    probs: torch.Tensor,
    k: int,
    attention_mask: torch.Tensor | None = None,
    min_per_token: int = 1,
    max_per_token: int | None = None,
    *,
    impl: str = "auto",
) -> torch.Tensor:
    """Offline SeqTopK: a boolean mask [B, T, E] of the selected (token, expert) pairs.

    Args:
        probs: [B, T, E] per-token router probabilities (any finite scores whose order is the
            routing preference; log-probabilities give the same selection). Computed in float32.
        k: average experts per valid token; each sequence spends ``k * valid_tokens``.
        attention_mask: [B, T] with 1 (or True) for real tokens and 0 for padding; ``None`` means
            every token is real.
        min_per_token: L, the fewest experts a valid token receives (the paper uses 1).
        max_per_token: U, the most a valid token receives (default ``min(k + 2, E)``).
        impl: ``"auto"`` (Triton for CUDA tensors when Triton imports, numba for CPU tensors
            when numba imports, else torch), ``"reference"``, ``"torch"``, ``"triton"`` (CUDA,
            or CPU tensors under ``TRITON_INTERPRET=1``) or ``"numba"`` (CPU tensors).

    Raises ``ValueError``/``TypeError`` naming the argument for a wrong shape, a NaN, a mask that
    is not 0/1, ``k`` outside [1, E] or bounds that make the budget infeasible, and
    ``RuntimeError`` for ``impl="triton"`` or ``"numba"`` where it cannot run.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    scores, valid, k, low, high = _checked_inputs(
        probs, k, attention_mask, min_per_token, max_per_token
    )
    path = resolve_path(impl, scores.device)
    if path == "reference":
        return select_experts_reference(probs, k, attention_mask, low, high)
    return _select_dense(scores, valid, k, low, high, path=path)


def routing_weights(
    probs: torch.Tensor, selected: torch.Tensor, *, renormalize: bool = False
) -> torch.Tensor:
    """Dense gate weights [B, T, E]: ``probs`` on selected pairs, 0 elsewhere.

    With ``renormalize`` each token's weights are divided by the sum over its own selected experts
    (a token with no experts keeps all-zero weights instead of 0/0). Gradients reach only the
    selected entries of ``probs``.
    """
    selected, probs = check_selection("selected", selected, "probs", probs)
    weights = probs * selected.to(probs.dtype)
    if not renormalize:
        return weights
    total = weights.sum(dim=-1, keepdim=True)
    safe_total = torch.where(total > 0, total, torch.ones_like(total))
    return weights / safe_total


def selection_to_indices(
    selected: torch.Tensor, weights: torch.Tensor, num_slots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pack a selection into fixed-width slots: ``(indices [N, S], slot_weights [N, S])``.

    ``N`` is the number of tokens (all leading dimensions flattened) and ``S = num_slots`` must be
    at least the largest per-token count. Selected experts fill the first slots in descending
    weight order; unused slots hold a real, unselected expert index with weight exactly 0, so
    every experts implementation (including grouped and batched matmuls that reject sentinel
    indices) computes the same output.
    """
    selected, weights = check_selection("selected", selected, "weights", weights)
    num_experts = selected.shape[-1]
    if isinstance(num_slots, bool) or not isinstance(num_slots, int):
        raise TypeError(f"num_slots must be an int, got {type(num_slots).__name__}")
    if not 1 <= num_slots <= num_experts:
        raise ValueError(f"num_slots must be in [1, {num_experts}], got {num_slots}")
    flat_selected = selected.reshape(-1, num_experts)
    flat_weights = weights.reshape(-1, num_experts)
    most = int(flat_selected.sum(dim=-1).max()) if flat_selected.numel() else 0
    if most > num_slots:
        raise ValueError(f"num_slots={num_slots} is smaller than a token's expert count {most}")
    # Unselected experts sort after every selected one (their key is -inf) and keep expert order.
    key = flat_weights.detach().float().masked_fill(~flat_selected, -torch.inf)
    order = torch.sort(key, dim=-1, descending=True, stable=True).indices[:, :num_slots]
    in_use = flat_selected.gather(-1, order)
    slot_weights = flat_weights.gather(-1, order) * in_use.to(flat_weights.dtype)
    return order, slot_weights
