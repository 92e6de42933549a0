import pytest
import torch
from densenet_limits import (
    MLP,
    DenseMLP,
    FanInOneLinear,
    SparseMLP,
    TrainConfig,
    load_network,
    sample_hard_family,
    train,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from kernelkit.utils import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def assert_within_bounds(model, bound):
    for weight, bias in model.affine_layers():
        fan_in = weight.shape[1]
        assert float(weight.abs().max()) <= bound / fan_in * (1 + 1e-6)
        assert float(bias.abs().max()) <= bound * (1 + 1e-6)


@pytest.mark.parametrize("parametrization", ["tanh", "clamp"])
def test_dense_weights_stay_in_their_box_through_training(parametrization):
    x, y = sample_hard_family(256, 12, generator=torch.Generator().manual_seed(0))
    model = DenseMLP([12, 24, 16, 1], 2.0, parametrization=parametrization)
    assert_within_bounds(model, 2.0)
    # Large steps push parameters against the box: a missing projection would show.
    before = [w.clone() for w, _ in model.affine_layers()]
    train(model, x, 50 * y, TrainConfig(steps=60, batch_size=64, lr=0.5, clamp_lr_per_bound=5.0))
    assert_within_bounds(model, 2.0)
    after = [w for w, _ in model.affine_layers()]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    if parametrization == "clamp":
        # The clamp is active: some weight sits exactly on the bound.
        weight = after[0]
        assert bool((weight.abs() >= 2.0 / 12 * (1 - 1e-6)).any())


def test_unconstrained_mlp_can_leave_the_dense_box():
    model = MLP([12, 24, 1])
    weight = model.affine_layers()[0][0]
    assert float(weight.abs().max()) > 1.0 / 12


@given(st.integers(1, 6), st.integers(1, 20))
@settings(max_examples=15)
def test_fan_in_one_layer_matches_its_dense_matrix(in_features, out_features):
    layer = FanInOneLinear(
        in_features, out_features, 3.0, generator=torch.Generator().manual_seed(0)
    )
    x = torch.rand(5, in_features)
    expected = x @ layer.weight.T + layer.bias
    torch.testing.assert_close(layer(x), expected)
    assert int((layer.weight != 0).sum(1).max()) <= 1


def test_sparse_mlp_first_layer_reads_one_coordinate():
    model = SparseMLP([8, 16, 1], 4.0)
    first, _ = model.affine_layers()[0]
    assert torch.equal((first != 0).sum(1), torch.ones(16, dtype=torch.int64))


@pytest.mark.parametrize(
    "model",
    [
        DenseMLP([5, 7, 2], 3.0, parametrization="clamp", seed=3),
        SparseMLP([5, 10, 3, 1], 2.0),
        MLP([5, 6, 1]),
    ],
)
def test_save_and_load_round_trip(tmp_path, model):
    model.save_pretrained(tmp_path / "net")
    loaded = load_network(tmp_path / "net")
    assert type(loaded) is type(model)
    x = torch.rand(4, 5)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: DenseMLP([4, 8, 1], 0.0), ValueError, "bound must be a finite number > 0"),
        (lambda: DenseMLP([4, 8, 1], -1.0), ValueError, "bound must be"),
        (lambda: DenseMLP([4, 8, 1], float("inf")), ValueError, "bound must be"),
        (lambda: DenseMLP([4], 1.0), ValueError, "widths must be a sequence"),
        (lambda: DenseMLP([4, 0, 1], 1.0), ValueError, r"widths\[1\] must be >= 1"),
        (
            lambda: DenseMLP([4, 8, 1], 1.0, parametrization="sigmoid"),
            ValueError,
            "parametrization",
        ),
        (lambda: SparseMLP([4, 1], 1.0), ValueError, "at least one hidden layer"),
        (lambda: TrainConfig(steps=0), ValueError, "steps must be >= 1"),
        (lambda: TrainConfig(lr=-1.0), ValueError, "lr must be"),
    ],
)
def test_bad_configurations_raise(build, error, match):
    with pytest.raises(error, match=match):
        build()


def test_wrong_input_width_raises():
    with pytest.raises(ValueError, match="last dimension 4"):
        DenseMLP([4, 8, 1], 1.0)(torch.rand(2, 5))
