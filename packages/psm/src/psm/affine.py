"""Associative special cases: linear RNNs as affine prefix scans.

Each model in the table below updates its state by ``s_t = a_t * s_{t-1} + b_t`` (elementwise
after broadcasting the decay ``a_t`` to the state's shape). Lifting a step to the pair
``(a, b)`` gives an associative aggregator with the older step on the left::

    (a1, b1) (+) (a2, b2) = (a2 * a1, a2 * b1 + b2),        identity (1, 0)

whose prefix aggregate's second component is the state. Because it is associative, the parallel
path need not follow the PSM tree: :func:`affine_states` hands it to
:func:`kernelkit.scan.linear_scan` (a Triton kernel on CUDA), and ``method="tree"`` runs the same
steps through :func:`psm.scan.exclusive_prefix` so the two can be checked against each other.

======================  ===============================  ===================================
model                   decay a_t (per head)              increment b_t
======================  ===============================  ===================================
linear attention        1                                 k_t v_t^T
RetNet                  gamma (a constant per head)       k_t v_t^T
Mamba-2 (scalar decay)  exp(dt_t * A)                     dt_t B_t x_t^T
GLA                     diag(alpha_t), alpha = exp(g_t)   k_t v_t^T
Mamba (diagonal S6)     exp(dt_t A), per channel x N      dt_t x_t B_t
mLSTM                   f_t (exp input gate, stabilised)  exp(i_t) k_t v_t^T, normaliser k_t
======================  ===============================  ===================================

Shapes: keys ``(B, T, H, dk)``, values ``(B, T, H, dv)``, states ``(B, T, H, dk, dv)``; Mamba's
inputs ``x, dt: (B, T, D)``, ``A: (D, N)``, ``B: (B, T, N)``, states ``(B, T, D, N)``; Mamba-2's
``x: (B, T, H, P)``, ``dt: (B, T, H)``, ``A: (H,)``, ``B: (B, T, H, N)``, states
``(B, T, H, N, P)``. Gates are taken in log space where the model defines them so.

mLSTM's exponential input gate overflows unless the state is kept relative to a running maximum
``m_t = max(log f_t + m_{t-1}, i_t)``; its scan element is ``(g, m, X)`` standing for the affine map
``h -> exp(g) h + exp(m) X`` and is combined by :func:`mlstm_aggregator`. The ``linear_scan`` path
computes ``m_t`` in closed form (``m_t = G_t + cummax_s(i_s - G_s)`` with ``G`` the cumulative log
forget gate) and then scans the rescaled state, whose coefficients are all at most 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from kernelkit.scan import linear_scan
from kernelkit.validation import check_floating, check_ndim
from psm.scan import exclusive_prefix

__all__ = [
    "AFFINE_STEPS",
    "AffineSteps",
    "MLSTMStates",
    "affine_aggregator",
    "affine_states",
    "gla_steps",
    "linear_attention_steps",
    "mamba2_steps",
    "mamba_steps",
    "mlstm_aggregator",
    "mlstm_output",
    "mlstm_states",
    "read_out",
    "retnet_steps",
]

Method = Literal["linear_scan", "tree", "loop"]
METHODS = ("linear_scan", "tree", "loop")


class AffineSteps(NamedTuple):
    """Per-step decay and increment, both ``(B, T, *S)`` (the decay already broadcast)."""

    decay: torch.Tensor
    increment: torch.Tensor


def _outer(k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return k.unsqueeze(-1) * v.unsqueeze(-2)


def _check_kv(k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("k", k), ("v", v)):
        check_floating(name, t)
        check_ndim(name, t, 4)
    if k.shape[:3] != v.shape[:3]:
        raise ValueError(
            f"k and v must share (batch, time, heads), got {tuple(k.shape)} and {tuple(v.shape)}"
        )


def linear_attention_steps(k: torch.Tensor, v: torch.Tensor) -> AffineSteps:
    """Unnormalised linear attention: ``S_t = S_{t-1} + k_t v_t^T``."""
    _check_kv(k, v)
    increment = _outer(k, v)
    return AffineSteps(torch.ones_like(increment), increment)


def retnet_steps(k: torch.Tensor, v: torch.Tensor, gamma: torch.Tensor) -> AffineSteps:
    """RetNet retention: ``S_t = gamma_h S_{t-1} + k_t v_t^T`` with ``gamma: (H,)``."""
    _check_kv(k, v)
    check_floating("gamma", gamma)
    if gamma.shape != (k.shape[2],):
        raise ValueError(
            f"gamma must have shape ({k.shape[2]},) (one per head), got {tuple(gamma.shape)}"
        )
    increment = _outer(k, v)
    return AffineSteps(gamma[:, None, None].expand_as(increment), increment)


def gla_steps(k: torch.Tensor, v: torch.Tensor, log_alpha: torch.Tensor) -> AffineSteps:
    """Gated linear attention: ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T``, ``g = log_alpha``."""
    _check_kv(k, v)
    check_floating("log_alpha", log_alpha)
    if log_alpha.shape != k.shape:
        raise ValueError(
            f"log_alpha must have the shape of k {tuple(k.shape)}, got {tuple(log_alpha.shape)}"
        )
    increment = _outer(k, v)
    return AffineSteps(log_alpha.exp().unsqueeze(-1).expand_as(increment), increment)


def mamba2_steps(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor
) -> AffineSteps:
    """Mamba-2 / SSD with a scalar decay per head: ``S_t = exp(dt_t A) S_{t-1} + dt_t B_t x_t^T``."""
    for name, t, ndim in (("x", x, 4), ("dt", dt, 3), ("A", A, 1), ("B", B, 4)):
        check_floating(name, t)
        check_ndim(name, t, ndim)
    batch, steps, heads, _ = x.shape
    if dt.shape != (batch, steps, heads) or A.shape != (heads,) or B.shape[:3] != x.shape[:3]:
        raise ValueError(
            f"for x {tuple(x.shape)} expected dt ({batch}, {steps}, {heads}), A ({heads},) and "
            f"B ({batch}, {steps}, {heads}, N); got {tuple(dt.shape)}, {tuple(A.shape)}, {tuple(B.shape)}"
        )
    increment = dt[..., None, None] * _outer(B, x)
    decay = (dt * A).exp()[..., None, None].expand_as(increment)
    return AffineSteps(decay, increment)


def mamba_steps(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> AffineSteps:
    """Mamba (S6), diagonal per channel: ``h_t = exp(dt_t A) * h_{t-1} + dt_t x_t B_t``."""
    for name, t, ndim in (("x", x, 3), ("dt", dt, 3), ("A", A, 2), ("B", B, 3)):
        check_floating(name, t)
        check_ndim(name, t, ndim)
    if (
        dt.shape != x.shape
        or A.shape[0] != x.shape[2]
        or B.shape[:2] != x.shape[:2]
        or B.shape[2] != A.shape[1]
    ):
        raise ValueError(
            f"for x {tuple(x.shape)} expected dt of the same shape, A ({x.shape[2]}, N) and "
            f"B ({x.shape[0]}, {x.shape[1]}, N); got {tuple(dt.shape)}, {tuple(A.shape)}, {tuple(B.shape)}"
        )
    decay = (dt.unsqueeze(-1) * A).exp()
    increment = (dt * x).unsqueeze(-1) * B.unsqueeze(2)
    return AffineSteps(decay, increment)


AFFINE_STEPS: dict[str, Callable[..., AffineSteps]] = {
    "linear_attention": linear_attention_steps,
    "retnet": retnet_steps,
    "mamba2": mamba2_steps,
    "gla": gla_steps,
    "mamba": mamba_steps,
}


def _check_operands(older: object, newer: object, packed: str) -> None:
    """Two floating operands of one shape (cheap: no data is read, so the scan's inner loop can
    afford it)."""
    check_floating("older", older)
    check_floating("newer", newer)
    if older.shape != newer.shape or older.dtype != newer.dtype:
        raise ValueError(
            f"older and newer must share a shape and dtype {packed}, got {tuple(older.shape)} "
            f"{older.dtype} and {tuple(newer.shape)} {newer.dtype}"
        )


def affine_aggregator(older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
    """Compose two affine steps packed as ``(N, 2, *S)`` (decay, increment); older on the left.

    NaN propagates, as in the arithmetic it stands for."""
    _check_operands(older, newer, "(N, 2, *S)")
    if older.ndim < 2 or older.shape[1] != 2:
        raise ValueError(f"older must have shape (N, 2, *S), got {tuple(older.shape)}")
    a_old, b_old = older.unbind(1)
    a_new, b_new = newer.unbind(1)
    return torch.stack([a_new * a_old, a_new * b_old + b_new], dim=1)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def affine_states(
    steps: AffineSteps, h0: torch.Tensor | None = None, *, method: Method = "linear_scan"
) -> torch.Tensor:
    """All states ``s_t`` (inclusive), ``(B, T, *S)``; ``h0`` (``(B, *S)``) is ``s_{-1}``, else 0.

    ``method``: ``"linear_scan"`` (kernelkit, the fast path), ``"tree"`` (the generic PSM tree
    with :func:`affine_aggregator`) or ``"loop"`` (one step at a time, the specification).
    """
    _check_method(method)
    decay, increment = steps
    check_floating("decay", decay)
    check_floating("increment", increment)
    if decay.shape != increment.shape or decay.ndim < 2:
        raise ValueError(
            f"decay and increment must share a shape (B, T, *S), got {tuple(decay.shape)} and "
            f"{tuple(increment.shape)}"
        )
    if decay.dtype != increment.dtype or (h0 is not None and h0.dtype != decay.dtype):
        raise TypeError(
            f"decay, increment and h0 must share a dtype, got {decay.dtype}, {increment.dtype}"
            f" and {None if h0 is None else h0.dtype}"
        )
    if h0 is not None and h0.shape != decay.shape[:1] + decay.shape[2:]:
        raise ValueError(
            f"h0 must have shape {tuple(decay.shape[:1] + decay.shape[2:])}, got {tuple(h0.shape)}"
        )
    if method == "linear_scan":
        # A broadcast (zero-stride) decay makes the parallel scan about 4x slower on the CPU.
        return linear_scan(decay.contiguous(), increment, h0, dim=1)
    if method == "loop":
        state = torch.zeros_like(increment[:, 0]) if h0 is None else h0
        states = []
        for t in range(decay.shape[1]):
            state = decay[:, t] * state + increment[:, t]
            states.append(state)
        return torch.stack(states, dim=1)
    items = torch.stack([decay, increment], dim=2)
    identity = torch.stack([torch.ones_like(decay[0, 0]), torch.zeros_like(decay[0, 0])])
    exclusive, final = exclusive_prefix(affine_aggregator, items, identity, return_final=True)
    inclusive = torch.cat([exclusive[:, 1:], final.unsqueeze(1)], dim=1)
    cumulative_decay, offset = inclusive.unbind(2)
    return offset if h0 is None else cumulative_decay * h0.unsqueeze(1) + offset


def _check_query(states: object, query: object, name: str = "states") -> None:
    check_floating(name, states)
    check_floating("query", query)
    check_ndim("query", query, 4)
    if tuple(query.shape) != tuple(states.shape[:4]) or query.dtype != states.dtype:
        raise ValueError(
            f"query must have shape (B, T, H, dk) = {tuple(states.shape[:4])} and dtype "
            f"{states.dtype} like {name}, got {tuple(query.shape)} {query.dtype}"
        )


def read_out(states: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
    """``o_t = S_t^T q_t`` for key-value states ``(B, T, H, dk, dv)`` and queries ``(B, T, H, dk)``.

    NaN propagates, as in ``torch.einsum``."""
    check_floating("states", states)
    check_ndim("states", states, 5)
    _check_query(states, query)
    return torch.einsum("bthkv,bthk->bthv", states, query)


class MLSTMStates(NamedTuple):
    """Stabilised mLSTM states: ``C_t = exp(m_t) X_t``, ``n_t = exp(m_t) nu_t``."""

    memory: torch.Tensor  # X, (B, T, H, dk, dv)
    normaliser: torch.Tensor  # nu, (B, T, H, dk)
    stabiliser: torch.Tensor  # m, (B, T, H)


def mlstm_aggregator(older: torch.Tensor, newer: torch.Tensor) -> torch.Tensor:
    """Compose mLSTM scan elements packed as ``(N, H, dk, dv + 3)``: ``[X | nu | g | m]``.

    ``g`` (total log forget gate) and ``m`` (log scale) are repeated along ``dk``. NaN
    propagates, as in the arithmetic it stands for.
    """
    _check_operands(older, newer, "(N, H, dk, dv + 3)")
    if older.ndim != 4 or older.shape[-1] < 3:
        raise ValueError(f"older must have shape (N, H, dk, dv + 3), got {tuple(older.shape)}")
    g_old, m_old = older[..., -2:-1], older[..., -1:]
    g_new, m_new = newer[..., -2:-1], newer[..., -1:]
    carried = g_new + m_old
    m = torch.maximum(carried, m_new)
    values = (carried - m).exp() * older[..., :-2] + (m_new - m).exp() * newer[..., :-2]
    return torch.cat([values, g_old + g_new, m], dim=-1)


def _check_mlstm(k, v, input_gate, forget_gate) -> None:
    _check_kv(k, v)
    for name, t in (("input_gate", input_gate), ("forget_gate", forget_gate)):
        check_floating(name, t)
        if t.shape != k.shape[:3]:
            raise ValueError(
                f"{name} must have shape {tuple(k.shape[:3])} (B, T, H), got {tuple(t.shape)}"
            )


def mlstm_states(
    k: torch.Tensor,
    v: torch.Tensor,
    input_gate: torch.Tensor,
    forget_gate: torch.Tensor,
    *,
    method: Method = "linear_scan",
) -> MLSTMStates:
    """mLSTM memory ``C_t = f_t C_{t-1} + exp(i_t) k_t v_t^T`` (and ``n_t``), stabilised.

    ``input_gate`` is the pre-activation ``i_t`` (exponential gate), ``forget_gate`` the
    pre-activation whose log-sigmoid is ``log f_t``; both ``(B, T, H)``. Zero initial state.
    """
    _check_method(method)
    _check_mlstm(k, v, input_gate, forget_gate)
    log_forget = F.logsigmoid(forget_gate)
    pairs = torch.cat([_outer(k, v), k.unsqueeze(-1)], dim=-1)
    if method == "linear_scan":
        cumulative = log_forget.cumsum(1)
        stabiliser = cumulative + (input_gate - cumulative).cummax(1).values
        previous = F.pad(stabiliser, (0, 0, 1, 0), value=float("-inf"))[:, :-1]
        decay = (log_forget + previous - stabiliser).exp()
        weight = (input_gate - stabiliser).exp()
        scaled = linear_scan(
            decay[..., None, None].expand_as(pairs).contiguous(),
            weight[..., None, None] * pairs,
            dim=1,
        )
    elif method == "loop":
        memory = torch.zeros_like(pairs[:, 0])
        m = torch.full_like(input_gate[:, 0], float("-inf"))
        scaled_steps, stabilisers = [], []
        for t in range(k.shape[1]):
            m_new = torch.maximum(log_forget[:, t] + m, input_gate[:, t])
            memory = (log_forget[:, t] + m - m_new).exp()[..., None, None] * memory + (
                input_gate[:, t] - m_new
            ).exp()[..., None, None] * pairs[:, t]
            m = m_new
            scaled_steps.append(memory)
            stabilisers.append(m)
        scaled, stabiliser = torch.stack(scaled_steps, 1), torch.stack(stabilisers, 1)
    else:
        dk = k.shape[-1]
        gates = torch.stack([log_forget, input_gate], dim=-1)[..., None, :].expand(
            *k.shape[:3], dk, 2
        )
        items = torch.cat([pairs, gates], dim=-1)
        identity = torch.zeros_like(items[0, 0])
        identity[..., -1] = float("-inf")
        exclusive, final = exclusive_prefix(mlstm_aggregator, items, identity, return_final=True)
        inclusive = torch.cat([exclusive[:, 1:], final.unsqueeze(1)], dim=1)
        scaled, stabiliser = inclusive[..., :-2], inclusive[..., 0, -1]
    return MLSTMStates(scaled[..., :-1], scaled[..., -1], stabiliser)


def mlstm_output(states: MLSTMStates, query: torch.Tensor) -> torch.Tensor:
    """``h_t = C_t^T q_t / max(|n_t^T q_t|, 1)`` computed in the stabilised frame.

    NaN propagates, as in ``torch.einsum``."""
    _check_query(states.normaliser, query, "states.normaliser")
    numerator = torch.einsum("bthkv,bthk->bthv", states.memory, query)
    denominator = torch.einsum("bthk,bthk->bth", states.normaliser, query).abs()
    denominator = torch.maximum(denominator, (-states.stabiliser).exp())
    return numerator / denominator.unsqueeze(-1)
