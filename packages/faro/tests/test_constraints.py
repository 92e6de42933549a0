import math

import pytest
import torch
from faro import Counterfactual, DemographicParity, EqualizedOdds, ProxyLagrangian, make_constraint
from hypothesis import given, settings
from hypothesis import strategies as st


def random_pairs(seed: int, n: int, num_groups: int, num_outcomes: int = 2):
    generator = torch.Generator().manual_seed(seed)
    margin = torch.randn(n, generator=generator, dtype=torch.float64)
    twin = margin + 0.7 * torch.randn(n, generator=generator, dtype=torch.float64)
    group = torch.arange(n) % num_groups  # every group present
    group = group[torch.randperm(n, generator=generator)]
    label = torch.randint(0, num_outcomes, (n,), generator=generator)
    return margin, twin, group, label


def reference_rate(values, mask):
    selected = [v for v, m in zip(values, mask, strict=True) if m]
    return sum(selected) / len(selected) if selected else None


def reference_statistics(name, margin, twin, group, label, num_groups, anchor, num_outcomes):
    """The constraint definitions written out with Python loops."""
    h = [1.0 if m > 0 else 0.0 for m in margin.tolist()]
    groups, labels = group.tolist(), label.tolist()
    out = []
    if name == "demographic_parity":
        anchor_rate = reference_rate(h, [g == anchor for g in groups])
        for a in range(num_groups):
            if a != anchor:
                rate = reference_rate(h, [g == a for g in groups])
                out += [rate - anchor_rate, anchor_rate - rate]
    elif name == "equalized_odds":
        for y in range(num_outcomes):
            anchor_rate = reference_rate(
                h, [g == anchor and lab == y for g, lab in zip(groups, labels, strict=True)]
            )
            for a in range(num_groups):
                if a != anchor:
                    rate = reference_rate(
                        h, [g == a and lab == y for g, lab in zip(groups, labels, strict=True)]
                    )
                    if rate is None or anchor_rate is None:
                        out += [None, None]
                    else:
                        out += [rate - anchor_rate, anchor_rate - rate]
    else:
        flips = [
            1.0 if (m > 0) != (t > 0) else 0.0
            for m, t in zip(margin.tolist(), twin.tolist(), strict=True)
        ]
        out = [reference_rate(flips, [g == a for g in groups]) for a in range(num_groups)]
    return out


@settings(max_examples=30)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(6, 60),
    num_groups=st.integers(2, 4),
    name=st.sampled_from(["demographic_parity", "equalized_odds", "counterfactual"]),
    data=st.data(),
)
def test_constraint_values_match_definition(seed, n, num_groups, name, data):
    anchor = data.draw(st.integers(0, num_groups - 1))
    margin, twin, group, label = random_pairs(seed, n, num_groups)
    constraint = make_constraint(name, 0.05, num_groups=num_groups, anchor=anchor)
    evaluation = constraint.evaluate(margin, group, label, twin)
    expected = reference_statistics(name, margin, twin, group, label, num_groups, anchor, 2)
    assert len(expected) == constraint.num_constraints == len(constraint.names)
    for j, value in enumerate(expected):
        if value is None:
            assert not bool(evaluation.active[j])
            assert float(evaluation.violations[j]) == 0.0
        else:
            assert bool(evaluation.active[j])
            assert math.isclose(float(evaluation.statistics[j]), value, abs_tol=1e-12)
            assert math.isclose(float(evaluation.violations[j]), value - 0.05, abs_tol=1e-12)


def test_constraint_counts_follow_the_anchoring_trick():
    assert DemographicParity(0.1, num_groups=4).num_constraints == 2 * 3
    assert EqualizedOdds(0.1, num_groups=4, num_outcomes=3).num_constraints == 2 * 3 * 3
    assert Counterfactual(0.1, num_groups=4).num_constraints == 4


@settings(max_examples=25)
@given(
    seed=st.integers(0, 10_000),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-5, 5),
    name=st.sampled_from(["dp", "eo", "cf"]),
)
def test_hard_values_invariant_to_rescaling_and_permutation(seed, scale, shift, name):
    margin, twin, group, label = random_pairs(seed, 50, 3)
    constraint = make_constraint(name, 0.02, num_groups=3)
    base = constraint.evaluate(margin, group, label, twin)
    # margins are reward differences: a shift of the reward cancels, a positive scale multiplies them
    rescaled = constraint.evaluate(scale * ((margin + shift) - shift), group, label, scale * twin)
    permutation = torch.randperm(50, generator=torch.Generator().manual_seed(seed))
    permuted = constraint.evaluate(
        margin[permutation], group[permutation], label[permutation], twin[permutation]
    )
    assert torch.equal(base.active, rescaled.active)
    torch.testing.assert_close(base.statistics, rescaled.statistics)
    torch.testing.assert_close(base.statistics, permuted.statistics)


def test_constant_reward_satisfies_every_constraint_trivially():
    _, _, group, label = random_pairs(0, 40, 3)
    zeros = torch.zeros(40, dtype=torch.float64)
    for name in ("dp", "eo", "cf"):
        evaluation = make_constraint(name, 0.0, num_groups=3).evaluate(zeros, group, label, zeros)
        assert evaluation.feasible
        assert evaluation.max_violation <= 0.0


def test_split_statistics_reproduce_the_global_proxy_gradient():
    # what the trainer does under data parallelism: local proxy sums, all-reduced counts, gradients averaged
    margin, _, group, _ = random_pairs(3, 40, 2)
    constraint = make_constraint("dp", 0.0)
    weights = torch.ones(2, dtype=torch.float64)

    def gradient(indices, counts=None, scale=1.0):
        leaf = margin.clone().requires_grad_(True)
        sums, local_counts = constraint.cell_statistics(leaf[indices], group[indices], proxy=True)
        evaluation = constraint.from_statistics(
            sums, local_counts if counts is None else counts, count_scale=scale
        )
        (weights * evaluation.violations).sum().backward()
        return leaf.grad

    everything = torch.arange(40)
    shards = [everything[:25], everything[25:]]
    global_counts = torch.bincount(group, minlength=2).to(torch.float64)
    averaged = sum(gradient(shard, global_counts, 0.5) for shard in shards) / 2
    torch.testing.assert_close(averaged, gradient(everything))


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: make_constraint("demographic_pariti", 0.1), ValueError, "name must be one of"),
        (lambda: DemographicParity(-0.1), ValueError, "epsilon must be >= 0"),
        (lambda: DemographicParity(0.1, num_groups=1), ValueError, "num_groups"),
        (lambda: DemographicParity(0.1, anchor=2), ValueError, "anchor"),
        (
            lambda: Counterfactual(0.1).evaluate(torch.zeros(3), torch.zeros(3, dtype=torch.long)),
            ValueError,
            "twin",
        ),
        (
            lambda: EqualizedOdds(0.1).evaluate(torch.zeros(3), torch.zeros(3, dtype=torch.long)),
            ValueError,
            "label",
        ),
        (
            lambda: DemographicParity(0.1).evaluate(torch.zeros(3), torch.tensor([0, 1, 2])),
            ValueError,
            "group values",
        ),
        (
            lambda: DemographicParity(0.1).evaluate(
                torch.zeros(3), torch.zeros(2, dtype=torch.long)
            ),
            ValueError,
            "same shape",
        ),
        (
            lambda: DemographicParity(0.1).evaluate(
                torch.tensor([0.0, float("nan")]), torch.zeros(2, dtype=torch.long)
            ),
            ValueError,
            "finite",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


@settings(max_examples=30)
@given(
    steps=st.lists(st.lists(st.floats(-100, 100), min_size=3, max_size=3), min_size=1, max_size=20),
    bound=st.floats(0.1, 20),
    dual_lr=st.floats(0, 5),
)
def test_multipliers_stay_in_the_box(steps, bound, dual_lr):
    lagrangian = ProxyLagrangian(3, bound=bound, dual_lr=dual_lr)
    for violation in steps:
        multipliers = lagrangian.ascend(torch.tensor(violation, dtype=torch.float64))
        assert bool((multipliers >= 0).all()) and bool((multipliers <= bound).all())


def test_multipliers_ignore_inactive_constraints_and_reject_bad_settings():
    lagrangian = ProxyLagrangian(2, bound=1.0, dual_lr=1.0)
    lagrangian.ascend(torch.tensor([0.5, 0.5]), torch.tensor([True, False]))
    assert lagrangian.multipliers.tolist() == [0.5, 0.0]
    assert float(lagrangian.penalty(torch.tensor([2.0, 3.0]), torch.tensor([True, True]))) == 1.0
    with pytest.raises(ValueError, match="bound must be a finite number > 0"):
        ProxyLagrangian(2, bound=math.inf)
    with pytest.raises(ValueError, match="2 entries"):
        lagrangian.ascend(torch.zeros(3))
