"""The policy view: the KL-regularised optimum of a reward and its group disparity.

For candidates ``y_1..y_C`` of a prompt, the maximiser of ``E_pi[r] - beta KL(pi || pi_ref)`` is
``pi(y|x) = pi_ref(y|x) exp(r(x,y)/beta) / Z(x)``.  Adding a group term ``delta(y)`` with
``|delta| <= D`` to the reward moves every log-probability by at most ``2D/beta`` (``D/beta`` in
the numerator, at most ``D/beta`` in the normaliser), so a fairer reward gives a fairer policy
and the transfer weakens as ``beta`` grows.  Because ``beta`` is only meaningful relative to the
reward's scale, policies of different rewards are compared at matched KL (:func:`beta_for_kl`).
"""

from __future__ import annotations

import math

import torch

from kernelkit.validation import check_finite, check_floating, check_ndim, check_tensor

__all__ = ["beta_for_kl", "group_selection_gap", "kl_optimal_policy", "policy_kl"]


def _check_rewards(
    rewards: torch.Tensor, reference: torch.Tensor | None, name: str = "rewards"
) -> torch.Tensor:
    """Checks a (prompts, candidates) reward or policy table; returns the reference policy."""
    check_floating(name, rewards)
    check_ndim(name, rewards, 2)
    if rewards.numel() == 0:
        raise ValueError(
            f"{name} must hold at least one prompt and one candidate, got shape {tuple(rewards.shape)}"
        )
    check_finite(name, rewards)
    if reference is None:
        return torch.full_like(rewards, 1.0 / rewards.shape[1])
    check_floating("reference", reference)
    if reference.shape != rewards.shape:
        raise ValueError(
            f"reference must have the shape of {name} {tuple(rewards.shape)}, got {tuple(reference.shape)}"
        )
    if bool((reference < 0).any()) or not torch.allclose(
        reference.sum(1), torch.ones_like(reference[:, 0]), atol=1e-5
    ):
        raise ValueError("reference must hold probabilities: non-negative rows that sum to 1")
    return reference


def kl_optimal_policy(
    rewards: torch.Tensor, beta: float, reference: torch.Tensor | None = None
) -> torch.Tensor:
    """``pi ∝ pi_ref exp(r / beta)`` over the candidates (dim 1) of each prompt (dim 0); uniform ``pi_ref`` by default."""
    if not isinstance(beta, int | float) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    reference = _check_rewards(rewards, reference)
    # Half precision overflows at r / beta for small beta (beta_for_kl starts at e^-12), so the
    # softmax runs in at least float32 and the policy comes back in the rewards' dtype.
    work = torch.promote_types(rewards.dtype, torch.float32)
    logits = torch.log(reference.to(work).clamp_min(1e-300)) + rewards.to(work) / beta
    return torch.softmax(logits, dim=1).to(rewards.dtype)


def policy_kl(policy: torch.Tensor, reference: torch.Tensor | None = None) -> float:
    """Mean over prompts of ``KL(pi(.|x) || pi_ref(.|x))``; NaN or ±inf in ``policy`` raises."""
    reference = _check_rewards(policy, reference, "policy")
    work = torch.promote_types(policy.dtype, torch.float32)  # 1e-300 is 0 in half precision
    policy, reference = policy.to(work), reference.to(work)
    terms = torch.where(
        policy > 0,
        policy * (torch.log(policy.clamp_min(1e-300)) - torch.log(reference.clamp_min(1e-300))),
        0.0,
    )
    return float(terms.sum(1).mean())


def group_selection_gap(
    policy: torch.Tensor,
    candidate_group: torch.Tensor,
    group: int = 1,
    reference: torch.Tensor | None = None,
) -> float:
    """``E_x[pi(G=g|x) - pi_ref(G=g|x)]``: the probability mass the policy moves toward group ``g``.

    Zero for a reward that ignores the group when quality is independent of it; negative when
    the policy selects group-``g`` responses less often than the reference does.
    """
    reference = _check_rewards(policy, reference, "policy")
    check_tensor("candidate_group", candidate_group)
    if candidate_group.is_floating_point() or candidate_group.dtype == torch.bool:
        raise TypeError(f"candidate_group must be an integer tensor, got {candidate_group.dtype}")
    if candidate_group.shape != policy.shape:
        raise ValueError(
            f"candidate_group must have the shape of policy {tuple(policy.shape)}, got {tuple(candidate_group.shape)}"
        )
    if bool((candidate_group < 0).any()):
        raise ValueError(
            f"candidate_group must hold group ids >= 0, got {int(candidate_group.min())}"
        )
    members = (candidate_group == group).to(policy.dtype)
    return float(((policy - reference) * members).sum(1).mean())


def beta_for_kl(
    rewards: torch.Tensor,
    target_kl: float,
    reference: torch.Tensor | None = None,
    *,
    tolerance: float = 1e-4,
    max_iterations: int = 200,
) -> float:
    """The ``beta`` whose KL-optimal policy has mean ``KL = target_kl`` (bisection on ``log beta``).

    KL decreases monotonically in ``beta``; raises ``ValueError`` when ``target_kl`` is not below
    the KL of the greedy policy (``beta -> 0``).
    """
    if not isinstance(target_kl, int | float) or not math.isfinite(target_kl) or target_kl <= 0:
        raise ValueError(f"target_kl must be a finite number > 0, got {target_kl!r}")
    low, high = -12.0, 12.0  # log beta
    if policy_kl(kl_optimal_policy(rewards, math.exp(low), reference), reference) < target_kl:
        raise ValueError(
            f"target_kl={target_kl} is not reachable: even a near-greedy policy stays closer to the reference"
        )
    for _ in range(max_iterations):
        middle = (low + high) / 2.0
        kl = policy_kl(kl_optimal_policy(rewards, math.exp(middle), reference), reference)
        if abs(kl - target_kl) <= tolerance:
            return math.exp(middle)
        if kl > target_kl:
            low = middle
        else:
            high = middle
    return math.exp((low + high) / 2.0)
