"""Augmenter, actions, loss terms and read-out: properties and bad inputs."""

from __future__ import annotations

import math

import pytest
import semola
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from semola import (
    CallableAction,
    ImageAction,
    LieAugmenter,
    VectorAction,
    closure_error,
    compare_algebras,
    equivariance_loss,
    so2_generator,
    so3_generators,
    trace_norm,
)

from kernelkit.testing import assert_close


def _skew(values: list[float], dim: int) -> torch.Tensor:
    matrix = torch.zeros(dim, dim, dtype=torch.float64)
    rows, cols = torch.triu_indices(dim, dim, 1)
    matrix[rows, cols] = torch.tensor(values, dtype=torch.float64)
    return matrix - matrix.T


@settings(max_examples=30)
@given(dim=st.integers(2, 5), data=st.data())
def test_exp_of_so_n_is_special_orthogonal(dim, data):
    count = dim * (dim - 1) // 2
    values = data.draw(st.lists(st.floats(-3, 3), min_size=count, max_size=count))
    if max(abs(v) for v in values) < 0.1:  # keep the generator clearly non-zero in float32
        values[0] = 1.0
    augmenter = LieAugmenter(dim, 1, init=_skew(values, dim).float()[None])
    coefficient = data.draw(st.floats(-4, 4))
    g = augmenter.exp(torch.tensor([[coefficient]])).double()[0]
    assert_close(g @ g.T, torch.eye(dim, dtype=torch.float64), atol=1e-5, rtol=0)
    assert abs(torch.linalg.det(g).item() - 1.0) < 1e-5


@settings(max_examples=25)
@given(seed=st.integers(0, 10_000), dim=st.integers(1, 4), batch=st.integers(1, 4))
def test_vector_action_is_a_homomorphism(seed, dim, batch):
    rng = torch.Generator().manual_seed(seed)
    augmenter = LieAugmenter(dim, 2, seed=seed)
    g1 = augmenter.exp(augmenter.sample_coefficients(batch, generator=rng)).double()
    g2 = augmenter.exp(augmenter.sample_coefficients(batch, generator=rng)).double()
    x = torch.randn(batch, 3, dim, generator=rng, dtype=torch.float64)
    action = VectorAction(dim)
    assert_close(action(g1, action(g2, x)), action(g1 @ g2, x), atol=1e-9, rtol=1e-9)


@settings(max_examples=15)
@given(seed=st.integers(0, 10_000))
def test_callable_se2_action_is_a_homomorphism(seed):
    def act(g, x):
        return x @ g[:, :2, :2].transpose(1, 2) + g[:, None, :2, 2]

    rng = torch.Generator().manual_seed(seed)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    augmenter = LieAugmenter(3, 2, action=CallableAction(act, 3), mask=mask, seed=seed)
    g1, g2 = (
        augmenter.exp(augmenter.sample_coefficients(2, generator=rng)).double() for _ in range(2)
    )
    x = torch.randn(2, 5, 2, generator=rng, dtype=torch.float64)
    assert_close(act(g1, act(g2, x)), act(g1 @ g2, x), atol=1e-9, rtol=1e-9)


def test_image_action_identity_and_quarter_turns_compose():
    image = torch.zeros(1, 1, 6, 6)
    image[0, 0, 1, 1:4] = 1.0
    action = ImageAction(2)
    assert_close(action(torch.eye(2)[None], image), image, atol=1e-6, rtol=0)
    quarter = torch.linalg.matrix_exp(so2_generator() * (math.pi / 2))
    twice = action(quarter, action(quarter, image))
    half = action(quarter @ quarter, image)
    assert_close(twice, half, atol=1e-5, rtol=0)
    assert_close(half, torch.flip(image, dims=(2, 3)), atol=1e-5, rtol=0)


def test_masked_generators_keep_zeros_and_views_have_shapes():
    mask = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    augmenter = LieAugmenter(2, 3, mask=mask, seed=1)
    assert torch.all(augmenter.basis()[:, 0, 0] == 0) and torch.all(augmenter.basis()[:, 1, 1] == 0)
    assert_close(semola.trace_norm(augmenter.basis()), torch.ones(3), atol=1e-6, rtol=0)
    views = augmenter(torch.randn(5, 4, 2), num_views=3)
    assert views.views.shape == (3, 5, 4, 2)
    assert views.group_elements.shape == (3, 5, 2, 2)
    assert views.coefficients.shape == (3, 5, 3)


def test_uniform_coefficients_stay_in_range_and_scales_get_gradients():
    augmenter = LieAugmenter(2, 2, coefficient_scale=[0.5, 2.0], learn_scale=True)
    coefficients = augmenter.sample_coefficients(4000, generator=torch.Generator().manual_seed(0))
    assert coefficients[:, 0].abs().max() <= 0.5 and coefficients[:, 1].abs().max() <= 2.0
    assert coefficients[:, 1].abs().max() > 1.9
    coefficients.abs().sum().backward()
    assert augmenter.log_scale.grad is not None and bool((augmenter.log_scale.grad > 0).all())


def test_normalized_basis_cannot_collapse_but_free_basis_can():
    for normalize in (True, False):
        augmenter = LieAugmenter(2, 1, normalize=normalize, seed=3)
        optimiser = torch.optim.SGD(augmenter.parameters(), lr=0.1)
        for _ in range(200):
            optimiser.zero_grad()
            (augmenter.basis() ** 2).sum().backward()
            optimiser.step()
        norm = semola.trace_norm(augmenter.basis()).item()
        if normalize:
            assert abs(norm - 1.0) < 1e-5
        else:
            assert norm < 0.01


class _InvariantModel(torch.nn.Module):
    def forward(self, x):
        return (x**2).sum((1, 2))


class _FirstCoordinateModel(torch.nn.Module):
    def forward(self, x):
        return x[:, 0, 0]


def test_equivariance_term_is_zero_for_invariant_model_and_positive_otherwise():
    augmenter = LieAugmenter(2, 1, init=so2_generator(), coefficient_scale=math.pi)
    x = torch.randn(16, 4, 2)
    views = augmenter(x, 4)
    for model, expect_zero in ((_InvariantModel(), True), (_FirstCoordinateModel(), False)):
        outputs = model(x)
        view_outputs = model(views.views.reshape(-1, 4, 2)).reshape(4, 16)
        value = equivariance_loss(outputs, view_outputs, views.group_elements).item()
        assert (value < 1e-9) if expect_zero else (value > 1e-2)


def test_equivariance_term_with_equivariant_output_action():
    augmenter = LieAugmenter(2, 1, init=so2_generator(), coefficient_scale=math.pi)
    x = torch.randn(8, 3, 2)
    views = augmenter(x, 2)
    identity_map = torch.nn.Identity()
    flat_views = identity_map(views.views)
    value = equivariance_loss(identity_map(x), flat_views, views.group_elements, VectorAction(2))
    assert value.item() < 1e-10
    assert equivariance_loss(identity_map(x), flat_views, views.group_elements, None).item() > 1e-2


def test_augmentation_term_is_a_hinge_on_displacement():
    x = torch.randn(10, 4, 2)
    assert semola.augmentation_loss(x, x.unsqueeze(0), margin=0.1).item() == pytest.approx(0.1)
    assert semola.augmentation_loss(x, (2 * x).unsqueeze(0), margin=0.1).item() == 0.0


def test_orthogonality_and_sparsity_terms():
    assert semola.orthogonality_loss(so3_generators()).item() == pytest.approx(0.0)
    parallel = torch.stack([so2_generator()[0], 3 * so2_generator()[0]])
    assert semola.orthogonality_loss(parallel).item() == pytest.approx(1.0)
    assert semola.sparsity_loss(torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])).item() == pytest.approx(
        0.0
    )
    assert semola.sparsity_loss(torch.ones(1, 2, 2)).item() == pytest.approx(1.0)


@settings(max_examples=30)
@given(seed=st.integers(0, 10_000), k=st.integers(1, 3), dim=st.integers(2, 4))
def test_compare_algebras_is_invariant_to_mixing_and_scale(seed, k, dim):
    rng = torch.Generator().manual_seed(seed)
    basis = torch.randn(k, dim, dim, generator=rng, dtype=torch.float64)
    mixing = torch.randn(k, k, generator=rng, dtype=torch.float64) + 3 * torch.eye(
        k, dtype=torch.float64
    )
    mixed = torch.einsum("ab,bij->aij", mixing, basis) * 7.5
    comparison = compare_algebras(mixed, basis)
    assert len(comparison.cosines) == k
    assert comparison.score == pytest.approx(1.0, abs=1e-8)
    other = torch.randn(k, dim, dim, generator=rng, dtype=torch.float64)
    assert compare_algebras(mixed, other).cosines == pytest.approx(
        compare_algebras(basis, other).cosines, abs=1e-8
    )


def test_compare_algebras_single_generator_is_abs_cosine():
    learned = torch.tensor([[0.3, -1.0], [1.0, 0.1]])
    expected = abs((learned * so2_generator()[0]).sum() / (learned.norm() * math.sqrt(2))).item()
    assert compare_algebras(-4 * learned, so2_generator()).score == pytest.approx(
        expected, abs=1e-6
    )
    assert compare_algebras(torch.eye(2), so2_generator()).score == pytest.approx(0.0, abs=1e-9)


def test_closure_error_zero_for_algebras_positive_otherwise():
    assert closure_error(so3_generators()) == pytest.approx(0.0, abs=1e-12)
    assert closure_error(so3_generators()[:2]) == pytest.approx(1.0)
    assert closure_error(so2_generator()) == 0.0


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (
            lambda: LieAugmenter(2, 1, init=torch.randn(1, 3, 3)),
            ValueError,
            r"init .*shape .*\(1, 2, 2\)",
        ),
        (lambda: LieAugmenter(2, 1, action=VectorAction(3)), ValueError, "dim=2"),
        (lambda: LieAugmenter(2, 0), ValueError, "num_generators must be >= 1"),
        (
            lambda: LieAugmenter(2, 1)(torch.randn(4, 3), num_views=0),
            ValueError,
            "num_views must be >= 1",
        ),
        (
            lambda: LieAugmenter(2, 1)(torch.randn(4, 3, 3)),
            ValueError,
            r"x must have shape \(batch, ..., 2\)",
        ),
        (lambda: LieAugmenter(2, 1, mask=torch.zeros(2, 2)), ValueError, "no free entry"),
        (lambda: LieAugmenter(2, 1, coefficient_scale=-1.0), ValueError, "coefficient_scale"),
        (lambda: ImageAction(4), ValueError, "dim must be 2"),
        (
            lambda: compare_algebras(torch.randn(1, 2, 2), torch.randn(1, 3, 3)),
            ValueError,
            "same size",
        ),
        (lambda: compare_algebras(torch.randn(2, 3), so2_generator()), ValueError, r"\(k, d, d\)"),
        (lambda: compare_algebras(torch.zeros(2, 2), so2_generator()), ValueError, "all-zero"),
        (lambda: semola.SEMoLALossConfig(num_views=0), ValueError, "num_views must be >= 1"),
        (
            lambda: semola.SEMoLA(
                torch.nn.Identity(), LieAugmenter(2, 1), output_action=VectorAction(3)
            ),
            ValueError,
            "must match",
        ),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_action_rejects_group_elements_of_the_wrong_size():
    with pytest.raises(ValueError, match=r"g must have shape \(batch, dim, dim\) = \(4, 2, 2\)"):
        VectorAction(2)(torch.eye(3).expand(4, 3, 3), torch.randn(4, 5, 2))


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (torch.ones(4, 3, dtype=torch.long), TypeError, "floating-point dtype"),
        (torch.tensor([[1.0, float("nan"), 0.0]]), ValueError, "must be finite"),
        (torch.tensor([[1.0, float("inf"), 0.0]]), ValueError, "must be finite"),
    ],
)
def test_augmenter_refuses_integer_or_non_finite_data(x, error, match):
    # Integer data used to come back "rotated" and truncated, NaN data as NaN views.
    with pytest.raises(error, match=match):
        LieAugmenter(3)(x)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (torch.ones(3, 3), None, None),
        (torch.ones(2, 3), ValueError, "square matrices"),
        (torch.ones(3), ValueError, "square matrices"),
        (torch.ones(2, 2, dtype=torch.long), TypeError, "floating-point"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), ValueError, "must be finite"),
    ],
)
def test_trace_norm_checks_its_input(value, error, match):
    if error is None:
        assert float(trace_norm(value)) == pytest.approx(3**0.5)
    else:
        with pytest.raises(error, match=match):
            trace_norm(value)
