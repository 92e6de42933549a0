"""k-annealing (CSRv2): start with many active latents and shrink linearly to the target k.

``k_t = round(k_init * (1 - p) + k_final * p)`` with ``p = step / int(decay_fraction * total)``,
evaluated per optimizer step; from step ``int(decay_fraction * total)`` on, ``k_t = k_final``. The
start is capped at ``hidden // 4`` (the 4k reconstruction term needs ``4 k_t <= hidden``) and never
below ``k_final``. Starting wide lets every latent receive gradient early, which is what keeps most
of them alive at k = 2..4.
"""

from __future__ import annotations

from kernelkit.validation import check_int_in_range

__all__ = ["annealed_k", "effective_k_init"]


def effective_k_init(k_init: int, k_final: int, hidden: int) -> int:
    """The start k actually used: ``k_init`` capped at ``hidden // 4``, floored at ``k_final``."""
    check_int_in_range("hidden", hidden, 1)
    check_int_in_range("k_final", k_final, 1, hidden)
    check_int_in_range("k_init", k_init, 1)
    return max(k_final, min(k_init, hidden // 4))


def annealed_k(
    step: int,
    total_steps: int,
    k_final: int,
    hidden: int,
    k_init: int = 64,
    decay_fraction: float = 0.7,
) -> int:
    """The number of active latents at optimizer ``step`` (0-based) of ``total_steps``.

    Monotone non-increasing in ``step``; equals ``k_final`` from ``int(decay_fraction *
    total_steps)`` on. Raises ``ValueError`` for a step outside ``[0, total_steps)`` or a
    ``decay_fraction`` outside ``[0, 1]``.
    """
    check_int_in_range("total_steps", total_steps, 1)
    check_int_in_range("step", step, 0, total_steps - 1)
    if isinstance(decay_fraction, bool) or not isinstance(decay_fraction, int | float):
        raise TypeError(f"decay_fraction must be a number, got {type(decay_fraction).__name__}")
    if not 0.0 <= decay_fraction <= 1.0:
        raise ValueError(f"decay_fraction must be in [0, 1], got {decay_fraction}")
    start = effective_k_init(k_init, k_final, hidden)
    decay_steps = int(decay_fraction * total_steps)
    if step >= decay_steps:
        return k_final
    progress = step / decay_steps
    return round(start * (1.0 - progress) + k_final * progress)
