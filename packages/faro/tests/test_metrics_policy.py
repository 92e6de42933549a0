import math

import pytest
import torch
from faro import (
    PairScores,
    beta_for_kl,
    brier_score,
    certify,
    expected_calibration_error,
    group_selection_gap,
    kl_optimal_policy,
    make_constraint,
    pareto_mask,
    policy_kl,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_ece_and_brier_match_hand_computation():
    probabilities = torch.tensor([0.05, 0.15, 0.85, 0.95, 0.9], dtype=torch.float64)
    outcomes = torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    # bins of width 0.5: {0.05, 0.15} vs outcome mean 0.5; {0.85, 0.95, 0.9} vs 2/3
    expected = (2 * abs(0.5 - 0.1) + 3 * abs(2 / 3 - 0.9)) / 5
    assert math.isclose(
        expected_calibration_error(probabilities, outcomes, num_bins=2), expected, rel_tol=1e-9
    )
    assert math.isclose(
        brier_score(probabilities, outcomes),
        float(((probabilities - outcomes) ** 2).mean()),
        rel_tol=1e-6,
    )
    with pytest.raises(ValueError, match=r"lie in \[0, 1\]"):
        expected_calibration_error(torch.tensor([1.5]), torch.tensor([1.0]))


def scores_with_rates(n_per_group: int, rate0: float, rate1: float) -> PairScores:
    def margins(rate):
        positives = round(rate * n_per_group)
        return torch.cat([torch.ones(positives), -torch.ones(n_per_group - positives)])

    margin = torch.cat([margins(rate0), margins(rate1)])
    group = torch.cat(
        [torch.zeros(n_per_group, dtype=torch.long), torch.ones(n_per_group, dtype=torch.long)]
    )
    return PairScores(margin, torch.zeros_like(margin), group, torch.ones_like(group))


def test_certificate_radius_and_verdicts():
    dp = make_constraint("dp", 0.05)
    fair = certify(None, scores_with_rates(20_000, 0.5, 0.5), dp, delta=0.05)
    expected_radius = math.sqrt(math.log(2 / 0.05) * (2 / 20_000) / 2)
    assert math.isclose(fair.bounds[0].radius, expected_radius, rel_tol=1e-9)
    assert fair.status == "certified" and "Certified" in fair.verdict
    assert fair.smallest_group == 20_000
    unfair = certify(None, scores_with_rates(20_000, 0.3, 0.6), dp, delta=0.05)
    assert unfair.status == "violated"
    small = certify(None, scores_with_rates(50, 0.5, 0.52), dp, delta=0.05)
    assert small.status == "inconclusive" and "pairs per cell" in small.verdict


def test_certificate_rejects_empty_groups_and_bad_delta():
    scores = scores_with_rates(10, 0.5, 0.5)
    only_zero = PairScores(
        scores.reward_chosen[:10],
        scores.reward_rejected[:10],
        scores.group[:10],
        scores.orientation[:10],
    )
    with pytest.raises(ValueError, match="no examples"):
        certify(None, only_zero, make_constraint("dp", 0.05))
    with pytest.raises(ValueError, match="delta"):
        certify(None, scores, make_constraint("dp", 0.05), delta=1.5)


@settings(max_examples=30)
@given(seed=st.integers(0, 1000), beta=st.floats(0.05, 20), bound=st.floats(0.0, 3.0))
def test_reward_disparity_moves_policy_log_probabilities_by_at_most_two_bound_over_beta(
    seed, beta, bound
):
    generator = torch.Generator().manual_seed(seed)
    rewards = torch.randn(20, 6, generator=generator, dtype=torch.float64)
    perturbation = bound * (2 * torch.rand(20, 6, generator=generator, dtype=torch.float64) - 1)
    policy = kl_optimal_policy(rewards, beta)
    shifted = kl_optimal_policy(rewards + perturbation, beta)
    torch.testing.assert_close(policy.sum(1), torch.ones(20, dtype=torch.float64))
    assert float((shifted.log() - policy.log()).abs().max()) <= 2 * bound / beta + 1e-9


def test_matched_kl_and_selection_gap():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.randn(200, 8, generator=generator)
    beta = beta_for_kl(rewards, 0.3)
    assert abs(policy_kl(kl_optimal_policy(rewards, beta)) - 0.3) < 1e-3
    groups = torch.zeros(200, 8, dtype=torch.long)
    groups[:, :4] = 1
    biased = rewards - 2.0 * groups
    assert group_selection_gap(kl_optimal_policy(biased, 1.0), groups) < -0.2
    assert abs(group_selection_gap(kl_optimal_policy(torch.zeros(200, 8), 1.0), groups)) < 1e-6
    with pytest.raises(ValueError, match="beta must be"):
        kl_optimal_policy(rewards, 0.0)


def test_pareto_mask_marks_dominated_points():
    assert pareto_mask([0.8, 0.7, 0.75, 0.7], [0.3, 0.0, 0.1, 0.2]) == [True, True, True, False]


def test_clean_ece_uses_the_clean_outcomes():
    from faro import LinearRewardModel, evaluate, synthetic_preferences

    model = LinearRewardModel(12)
    with torch.no_grad():
        model.linear.weight[0, :8] = 0.7
    unbiased = synthetic_preferences(2_000, seed=0, annotator_skew=0.0)
    row = evaluate(model, unbiased)
    # Without annotator skew the clean and biased labellings coincide.
    assert row["clean_ece"] == pytest.approx(row["ece"])
    assert row["clean_accuracy"] == pytest.approx(row["accuracy"])
    biased = synthetic_preferences(2_000, seed=0, annotator_skew=2.0)
    row = evaluate(model, biased)
    assert row["clean_ece"] != pytest.approx(row["ece"])
    assert row["clean_accuracy"] != pytest.approx(row["accuracy"])


@pytest.mark.parametrize(
    ("probabilities", "outcomes", "match"),
    [
        ([0.2, float("nan")], [0.0, 1.0], "probabilities must be finite"),
        ([], [], "must not be empty"),
        ([0.2, 0.4], [0.0, 2.0], "outcomes must be 0 or 1, got 2.0"),
        ([0.2, 0.4], [0.0, float("nan")], "outcomes must be finite"),
        ([0.2, 1.4], [0.0, 1.0], r"lie in \[0, 1\]"),
    ],
)
def test_calibration_metrics_refuse_nan_empty_and_non_binary_input(probabilities, outcomes, match):
    p, y = torch.tensor(probabilities, dtype=torch.float64), torch.tensor(outcomes)
    for metric in (expected_calibration_error, brier_score):
        with pytest.raises(ValueError, match=match):
            metric(p, y)
