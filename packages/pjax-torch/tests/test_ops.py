"""Each operator against the definition of a projection: on the set, nearest, idempotent."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pjax_torch.ops import bilinear, cross_entropy, identity, margin, quantize, sum_relu, target
from pjax_torch.ops import max as max_op
from pjax_torch.ops import sum as sum_op

seeds = st.integers(0, 2**31 - 1)
weights = st.sampled_from([1.0, 0.5, 3.0])


def restart_search(distance, starts: torch.Tensor, steps: int = 300) -> float:
    """The least ``distance`` found by Adam from every row of ``starts`` (an upper bound on the
    true minimum, so a correct projection is never beaten by more than rounding)."""
    points = starts.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([points], lr=0.05)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps, eta_min=1e-5)
    best = math.inf
    for _ in range(steps):
        optimiser.zero_grad()
        values = distance(points)
        best = min(best, float(values.detach().min()))
        values.sum().backward()
        optimiser.step()
        schedule.step()
    with torch.no_grad():
        return min(best, float(distance(points).min()))


def starts_around(point: torch.Tensor, generator: torch.Generator, count: int = 24) -> torch.Tensor:
    scales = torch.logspace(-2, 1, count, dtype=torch.float64).unsqueeze(-1)
    noise = torch.randn(count, point.numel(), generator=generator, dtype=torch.float64)
    return point.reshape(1, -1) + scales * noise


def _instance(seed: int, n: int, scale: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    return g, torch.randn(n, generator=g, dtype=torch.float64) * scale


@settings(max_examples=10)
@given(seed=seeds, n=st.integers(1, 4), far=st.sampled_from([0.5, 3.0, 10.0]), w=weights)
def test_bilinear_is_nearest_and_on_the_set(seed, n, far, w):
    g, a = _instance(seed, 2 * n, 0.3)
    a0, b0 = a[:n], a[n:]
    z0 = (a0 @ b0) + far * torch.randn((), generator=g, dtype=torch.float64)
    new_a, new_b, new_z = bilinear.project(a0, b0, z0, w).point
    assert all(bool(torch.isfinite(t).all()) for t in (new_a, new_b, new_z))
    assert abs(float(new_a @ new_b - new_z)) <= 1e-6
    ours = float(((new_a - a0) ** 2).sum() + ((new_b - b0) ** 2).sum() + w * (new_z - z0) ** 2)

    def distance(points):
        pa, pb = points[:, :n], points[:, n:]
        return (
            ((pa - a0) ** 2).sum(-1) + ((pb - b0) ** 2).sum(-1) + w * ((pa * pb).sum(-1) - z0) ** 2
        )

    assert ours <= restart_search(distance, starts_around(torch.cat([a0, b0]), g)) + 1e-7


def test_bilinear_never_fails_on_short_vectors_with_far_targets():
    # the regime where the reference code's 10 unguarded Newton steps leave (−1, 1) or diverge
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 4, generator=g, dtype=torch.float64) * 0.3
    b = torch.randn(20000, 4, generator=g, dtype=torch.float64) * 0.3
    z = (a * b).sum(-1) + torch.randn(20000, generator=g, dtype=torch.float64) * 10
    result = bilinear.project(a, b, z)
    assert all(bool(torch.isfinite(t).all()) for t in result.point)
    assert float(result.residual.max()) <= 1e-6


def test_bilinear_degenerate_faces():
    # a0 = −b0 (u = 0) with a large target: the answer has a = b on the first axis
    a = torch.tensor([[0.0, 0.0], [1.0, -2.0]], dtype=torch.float64)
    b = -a
    z = torch.tensor([5.0, 20.0], dtype=torch.float64)
    new_a, new_b, new_z = bilinear.project(a, b, z).point
    assert torch.allclose((new_a * new_b).sum(-1), new_z, atol=1e-9)
    assert torch.allclose(new_z, z - 1.0)
    assert float(new_a[0, 0]) == pytest.approx(2.0)  # ‖x‖² = 2(5 − 1) = 8, a = x/√2
    # mirror case a0 = b0 with a very negative target
    a = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    new_a, new_b, new_z = bilinear.project(
        a, a.clone(), torch.tensor([-20.0], dtype=torch.float64)
    ).point
    assert torch.allclose((new_a * new_b).sum(-1), new_z, atol=1e-9)
    assert torch.allclose(new_z, torch.tensor([-19.0], dtype=torch.float64))


def _reference_sum_relu(inputs, output):
    """The reference code's selection rule (it tests the requested output for zero)."""
    n = inputs.shape[-1]
    s = inputs.sum(-1)
    mid_1, mid_2 = s / n, (output - s) / (n + 1)
    new_1 = torch.where((s < 0).unsqueeze(-1), inputs, inputs - mid_1.unsqueeze(-1))
    dist_1 = torch.where(s < 0, output**2, output**2 + n * mid_1**2)
    new_output_2 = torch.clamp(output - mid_2, min=0)
    new_2 = torch.where(
        (new_output_2 == 0).unsqueeze(-1),
        inputs - mid_1.unsqueeze(-1),
        inputs + mid_2.unsqueeze(-1),
    )
    dist_2 = torch.where(output == 0, output**2 + n * mid_1**2, (n + 1) * mid_2**2)
    return torch.where((dist_1 < dist_2).unsqueeze(-1), new_1, new_2)


def _distance_to_graph_point(new_x, x0, z0, w=1.0):
    return ((new_x - x0) ** 2).sum(-1) + w * (torch.relu(new_x.sum(-1)) - z0) ** 2


def test_sum_relu_beats_the_reference_rule_and_is_never_worse():
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    z0 = torch.randn(20000, generator=g, dtype=torch.float64) * 2
    ours = _distance_to_graph_point(sum_relu.project(x0, z0).point[0], x0, z0)
    reference = _distance_to_graph_point(_reference_sum_relu(x0, z0), x0, z0)
    assert bool((ours <= reference + 1e-12).all())
    assert float((reference > ours + 1e-9).double().mean()) > 0.05  # the bug is real and caught


@settings(max_examples=10)
@given(seed=seeds, n=st.integers(1, 4), w=weights)
def test_sum_relu_is_nearest_and_on_the_set(seed, n, w):
    g, x0 = _instance(seed, n)
    z0 = 2 * torch.randn((), generator=g, dtype=torch.float64)
    new_x, new_z = sum_relu.project(x0, z0, w).point
    assert abs(float(torch.relu(new_x.sum()) - new_z)) <= 1e-9
    ours = float(((new_x - x0) ** 2).sum() + w * (new_z - z0) ** 2)

    def distance(points):
        return ((points - x0) ** 2).sum(-1) + w * (torch.relu(points.sum(-1)) - z0) ** 2

    # starts include points on the kink Σx = 0, where the nearest point often lies
    starts = torch.cat([starts_around(x0, g), (x0 - x0.mean()).reshape(1, -1)])
    assert ours <= restart_search(distance, starts) + 1e-7


@settings(max_examples=10)
@given(seed=seeds, n=st.integers(1, 5), w=weights)
def test_max_is_nearest_and_on_the_set(seed, n, w):
    g, a0 = _instance(seed, n)
    z0 = 2 * torch.randn((), generator=g, dtype=torch.float64)
    new_a, new_z = max_op.project(a0, z0, w).point
    assert abs(float(new_a.max() - new_z)) <= 1e-12
    ours = float(((new_a - a0) ** 2).sum() + w * (new_z - z0) ** 2)

    def distance(points):
        return ((points - a0) ** 2).sum(-1) + w * (points.max(-1).values - z0) ** 2

    assert ours <= restart_search(distance, starts_around(a0, g)) + 1e-7


def test_max_matches_exhaustive_active_sets():
    # exhaustive over which entries share the maximum (every subset), n = 4
    g = torch.Generator().manual_seed(2)
    for _ in range(200):
        a0 = torch.randn(4, generator=g, dtype=torch.float64)
        z0 = 2 * torch.randn((), generator=g, dtype=torch.float64)
        best = math.inf
        for mask in range(1, 16):
            chosen = torch.tensor([(mask >> i) & 1 for i in range(4)], dtype=torch.bool)
            level = (a0[chosen].sum() + z0) / (chosen.sum() + 1)
            if bool((a0[~chosen] <= level).all()):
                best = min(best, float(((a0[chosen] - level) ** 2).sum() + (level - z0) ** 2))
        new_a, new_z = max_op.project(a0, z0).point
        assert float(((new_a - a0) ** 2).sum() + (new_z - z0) ** 2) == pytest.approx(
            best, abs=1e-12
        )


@settings(max_examples=30)
@given(seed=seeds, levels=st.integers(2, 5), scale=st.sampled_from([0.5, 1.0, 2.0]), w=weights)
def test_quantize_is_nearest_by_grid_search(seed, levels, scale, w):
    g = torch.Generator().manual_seed(seed)
    a0 = 2 * torch.randn(8, generator=g, dtype=torch.float64)
    z0 = 2 * torch.randn(8, generator=g, dtype=torch.float64)
    new_a, new_z = quantize.project(a0, z0, w, levels=levels, scale=scale).point
    ours = (new_a - a0) ** 2 + w * (new_z - z0) ** 2
    grid = torch.linspace(-12, 12, 240001, dtype=torch.float64)
    on_graph = quantize.forward(grid, levels=levels, scale=scale)
    brute = ((grid - a0.unsqueeze(-1)) ** 2 + w * (on_graph - z0.unsqueeze(-1)) ** 2).min(-1).values
    assert bool((ours <= brute + 1e-9).all())
    # on the closure of the graph: the level is the nearest level to a, up to a boundary tie
    step = 2 * scale / (levels - 1)
    assert bool(((new_a.clamp(-scale, scale) - new_z).abs() <= step / 2 + 1e-12).all())


@settings(max_examples=30)
@given(seed=seeds, n=st.integers(1, 6), w=weights)
def test_sum_and_identity_closed_forms(seed, n, w):
    g, a0 = _instance(seed, n)
    z0 = 3 * torch.randn((), generator=g, dtype=torch.float64)
    new_a, new_z = sum_op.project(a0, z0, w).point
    assert abs(float(new_a.sum() - new_z)) <= 1e-12
    # optimality: the move is orthogonal to the hyperplane's tangent space, ratio fixed by w
    move_a, move_z = new_a - a0, new_z - z0
    assert torch.allclose(move_a, move_a.mean().expand(n), atol=1e-12)
    assert float(move_a[0]) == pytest.approx(float(-w * move_z), abs=1e-12)
    x, y = identity.project(a0, a0 + 1.0, w).point
    assert torch.allclose(x, y) and torch.allclose(x, a0 + w / (1 + w))


@pytest.mark.parametrize("module", [bilinear, sum_relu, max_op, sum_op])
def test_projecting_a_point_on_the_set_returns_it(module):
    g = torch.Generator().manual_seed(3)
    if module is bilinear:
        a = torch.randn(50, 3, generator=g, dtype=torch.float64)
        b = torch.randn(50, 3, generator=g, dtype=torch.float64)
        result = module.project(a, b, bilinear.forward(a, b)).point
        assert torch.allclose(result[0], a, atol=1e-9) and torch.allclose(result[1], b, atol=1e-9)
        return
    a = torch.randn(50, 3, generator=g, dtype=torch.float64)
    new_a, new_z = module.project(a, module.forward(a)).point
    assert torch.allclose(new_a, a, atol=1e-12)
    assert torch.allclose(new_z, module.forward(a), atol=1e-12)


def test_quantize_and_output_constraints_are_idempotent():
    g = torch.Generator().manual_seed(4)
    a = torch.randn(100, generator=g, dtype=torch.float64)
    z = quantize.forward(a, levels=3)
    new_a, new_z = quantize.project(a, z, levels=3).point
    assert torch.equal(new_a, a) and torch.equal(new_z, z)
    logits = torch.randn(10, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 4, (10,), generator=g)
    once = margin.project(logits, labels).point[0]
    assert torch.equal(margin.project(once, labels).point[0], once)
    assert float(margin.project(logits, labels).residual.max()) == 0.0
    values = torch.randn(5, dtype=torch.float64)
    assert torch.equal(target.project(values, values + 1).point[0], values + 1)


@pytest.mark.parametrize("lam", [0.1, 1.0, 5.0, 100.0])
def test_cross_entropy_prox_converges_for_every_lambda(lam):
    g = torch.Generator().manual_seed(5)
    logits = 3 * torch.randn(64, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=g)
    result = cross_entropy.project(logits, labels, lam=lam)
    assert float(result.residual.max()) <= 1e-8
    x = result.point[0]
    onehot = torch.nn.functional.one_hot(labels, 10).double()
    stationarity = torch.softmax(x, -1) - onehot + (x - logits) / lam
    assert float(stationarity.abs().max()) <= 1e-8


def test_reference_cross_entropy_fixed_point_fails_at_lambda_five():
    # documents the bug we fixed: x ← l + λ(y − softmax x) does not reach the prox at λ = 5
    g = torch.Generator().manual_seed(6)
    logits = 3 * torch.randn(64, 10, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 10, (64,), generator=g)
    onehot = torch.nn.functional.one_hot(labels, 10).double()
    exact = cross_entropy.project(logits, labels, lam=5.0).point[0]
    x = logits.clone()
    for _ in range(100):
        x = logits + 5.0 * (onehot - torch.softmax(x, -1))
    assert float((x - exact).norm(dim=-1).median() / exact.norm(dim=-1).median()) > 0.1


def test_float32_inputs_keep_their_dtype_and_stay_accurate():
    g = torch.Generator().manual_seed(7)
    a = torch.randn(128, 32, 16, generator=g)
    b = torch.randn(128, 32, 16, generator=g)
    z = torch.randn(128, 32, generator=g) * 5
    result = bilinear.project(a, b, z)
    assert all(t.dtype == torch.float32 for t in result.point)
    assert float(result.residual.max()) <= 1e-3 * float(z.abs().max())


def test_bad_inputs_raise_clear_errors():
    a = torch.randn(3, 4)
    with pytest.raises(ValueError, match="a and b must have the same shape"):
        bilinear.project(a, torch.randn(3, 5), torch.randn(3))
    with pytest.raises(ValueError, match=r"output.shape \+ \(n,\)"):
        sum_relu.project(a, torch.randn(4))
    with pytest.raises(TypeError, match="floating-point"):
        max_op.project(torch.ones(3, 4, dtype=torch.long), torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="weight must be a positive"):
        sum_op.project(a, torch.randn(3), weight=0.0)
    with pytest.raises(ValueError, match="levels must be an int >= 2"):
        quantize.project(torch.randn(3), torch.randn(3), levels=1)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\]"):
        margin.project(a, torch.tensor([0, 1, 4]))
    with pytest.raises(TypeError, match="labels must be an integer tensor"):
        cross_entropy.project(a, torch.zeros(3))
    with pytest.raises(ValueError, match="lam must be a positive"):
        cross_entropy.project(a, torch.zeros(3, dtype=torch.long), lam=-1.0)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_projections_refuse_non_finite_input(bad):
    from pjax_torch.ops import bilinear, max, sum_relu

    x = torch.ones(2, 3, dtype=torch.float64)
    z = torch.ones(2, dtype=torch.float64)
    poisoned = x.clone()
    poisoned[0, 1] = bad
    for project in (max.project, sum_relu.project):
        with pytest.raises(ValueError, match="must be finite"):
            project(poisoned, z)
        with pytest.raises(ValueError, match="output must be finite"):
            project(x, torch.tensor([1.0, bad], dtype=torch.float64))
    with pytest.raises(ValueError, match="a must be finite"):
        bilinear.project(poisoned, x, z)
    with pytest.raises(ValueError, match="b must be finite"):
        bilinear.project(x, poisoned, z)
