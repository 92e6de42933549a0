"""semola's public functions under kernelkit's bad-input harness (see kernelkit.testing_inputs)."""

import semola
import torch
import torch.nn.functional as F
from hypothesis import strategies as st

from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    IdsArg,
    PublicFunction,
    RealArg,
    TensorArg,
    assert_handles_bad_inputs,
    tensors,
    uncovered_names,
)


def augmenter(dim=2):
    torch.manual_seed(0)
    return semola.LieAugmenter(dim)


@st.composite
def points(draw, dim=2):
    batch, count = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    return {"x": draw(tensors(shape=(batch, count, dim), min_value=-3, max_value=3))}


@st.composite
def bases(draw, k=None):
    k = draw(st.integers(1, 3)) if k is None else k
    return draw(tensors(shape=(k, 3, 3), min_value=0.5, max_value=2))


@st.composite
def view_batches(draw):
    views, batch = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    outputs = draw(tensors(shape=(batch, 2)))
    return {
        "outputs": outputs,
        "view_outputs": draw(tensors(shape=(views, batch, 2))),
        "group_elements": torch.eye(2).expand(views, batch, 2, 2).clone(),
        "form": "squared",
    }


@st.composite
def regression_batches(draw):
    batch = draw(st.integers(1, 4))
    return {
        "x": draw(tensors(shape=(batch, 3, 2), min_value=-3, max_value=3)),
        "y": draw(tensors(shape=(batch, 3, 2))),
    }


@st.composite
def classification_batches(draw):
    batch = draw(st.integers(2, 4))
    return {
        "x": draw(tensors(shape=(batch, 3, 2), min_value=-3, max_value=3)),
        "y": torch.tensor(draw(st.lists(st.integers(0, 2), min_size=batch, max_size=batch))),
    }


def regression_trainer(kind):
    torch.manual_seed(0)
    base = semola.point_mlp(6, (3, 2), hidden=8)
    if kind == "plain":
        return semola.PlainModel(base)
    if kind == "augmented":
        return semola.AugmentedTraining(base, augmenter(), output_action=semola.VectorAction(2))
    return semola.SEMoLA(
        base,
        augmenter(),
        output_action=semola.VectorAction(2),
        config=semola.SEMoLALossConfig(num_views=2),
    )


def gan():
    torch.manual_seed(0)
    return semola.LieGAN(
        semola.point_mlp(6, (3,), hidden=8),
        augmenter(),
        semola.pair_discriminator(9, hidden=8),
        num_classes=3,
    )


POINTS = TensorArg(min_ndim=2)
BASIS = TensorArg(ndim=(2, 3))
# The trainers take whatever batch shape their base model takes, so x has no declared ndim.
MODEL_INPUT = TensorArg(dtypes=(torch.float32,), min_ndim=1)
BATCH = {"x": MODEL_INPUT, "y": TensorArg(ndim=3)}
CLASS_BATCH = {"x": MODEL_INPUT, "y": IdsArg(high=3, ndim=1)}


def _loss_of(trainer, loss):
    return lambda x, y: trainer.compute_loss(x, y, loss)


FUNCTIONS = [
    PublicFunction(
        "trace_norm",
        semola.trace_norm,
        bases().map(lambda b: {"generators": b}),
        {"generators": TensorArg(min_ndim=2)},
    ),
    PublicFunction(
        "LieAugmenter.forward",
        lambda x, num_views: augmenter()(x, num_views),
        points().map(lambda kw: {**kw, "num_views": 2}),
        {"x": POINTS, "num_views": CountArg(low=1)},
    ),
    PublicFunction(
        "LieAugmenter.exp",
        lambda coefficients: augmenter().exp(coefficients),
        st.builds(lambda: {"coefficients": torch.tensor([[0.5], [-1.0]])}),
        {"coefficients": TensorArg(min_ndim=1)},
    ),
    PublicFunction(
        "VectorAction.__call__",
        lambda g, x: semola.VectorAction(2)(g, x),
        points().map(lambda kw: {**kw, "g": torch.eye(2).expand(kw["x"].shape[0], 2, 2).clone()}),
        {"g": TensorArg(ndim=3), "x": POINTS},
    ),
    PublicFunction(
        "ImageAction.__call__",
        lambda g, x: semola.ImageAction(2)(g, x),
        st.builds(lambda: {"g": torch.eye(2).expand(2, 2, 2).clone(), "x": torch.rand(2, 1, 5, 5)}),
        {"g": TensorArg(ndim=3), "x": TensorArg(ndim=4)},
    ),
    PublicFunction(
        "CallableAction.__call__",
        lambda g, x: semola.CallableAction(
            lambda g, x: x @ g.transpose(1, 2), 2, data_check=semola.VectorAction(2).check_data
        )(g, x),
        points().map(lambda kw: {**kw, "g": torch.eye(2).expand(kw["x"].shape[0], 2, 2).clone()}),
        {"g": TensorArg(ndim=3), "x": POINTS},
    ),
    PublicFunction(
        "equivariance_loss",
        lambda **kw: semola.equivariance_loss(**kw, output_action=semola.VectorAction(2)),
        view_batches(),
        {
            "outputs": TensorArg(min_ndim=1, nan="propagate"),
            "view_outputs": TensorArg(min_ndim=2, nan="propagate"),
            "group_elements": TensorArg(ndim=4, nan="propagate"),
            "form": ChoiceArg(),
        },
    ),
    PublicFunction(
        "augmentation_loss",
        semola.augmentation_loss,
        view_batches().map(
            lambda kw: {"inputs": kw["outputs"], "views": kw["view_outputs"], "margin": 0.1}
        ),
        {
            "inputs": TensorArg(min_ndim=1, nan="propagate"),
            "views": TensorArg(min_ndim=2, nan="propagate"),
            "margin": RealArg(low=0.0),
        },
    ),
    PublicFunction(
        "orthogonality_loss",
        semola.orthogonality_loss,
        bases().map(lambda b: {"basis": b}),
        {"basis": TensorArg(ndim=3, nan="propagate")},
    ),
    PublicFunction(
        "sparsity_loss",
        semola.sparsity_loss,
        bases().map(lambda b: {"basis": b}),
        {"basis": TensorArg(ndim=3, nan="propagate")},
    ),
    PublicFunction(
        "closure_error", semola.closure_error, bases().map(lambda b: {"basis": b}), {"basis": BASIS}
    ),
    PublicFunction(
        "compare_algebras",
        semola.compare_algebras,
        st.tuples(bases(), bases()).map(lambda p: {"learned": p[0], "reference": p[1]}),
        {"learned": BASIS, "reference": BASIS},
    ),
    PublicFunction(
        "symmetry_signature",
        lambda x, num_views: semola.symmetry_signature(
            semola.point_mlp(6, (), hidden=4), augmenter(), x, num_views=num_views
        ),
        regression_batches().map(lambda kw: {"x": kw["x"], "num_views": 2}),
        {"x": MODEL_INPUT, "num_views": CountArg(low=1)},
    ),
    PublicFunction(
        "SEMoLA.compute_loss",
        _loss_of(regression_trainer("semola"), F.mse_loss),
        regression_batches(),
        BATCH,
    ),
    PublicFunction(
        "PlainModel.compute_loss",
        _loss_of(regression_trainer("plain"), F.mse_loss),
        regression_batches(),
        BATCH,
    ),
    PublicFunction(
        "AugmentedTraining.compute_loss",
        _loss_of(regression_trainer("augmented"), F.mse_loss),
        regression_batches(),
        BATCH,
    ),
    PublicFunction(
        "LieGAN.compute_loss",
        _loss_of(gan(), F.cross_entropy),
        classification_batches(),
        CLASS_BATCH,
    ),
    PublicFunction(
        "point_mlp",
        semola.point_mlp,
        st.builds(lambda: {"in_features": 4, "hidden": 8, "out_shape": (2,)}),
        {"in_features": CountArg(low=1), "hidden": CountArg(low=1)},
    ),
    PublicFunction(
        "small_cnn",
        semola.small_cnn,
        st.builds(lambda: {"num_classes": 3, "channels": 2}),
        {"num_classes": CountArg(low=2), "channels": CountArg(low=1)},
    ),
    PublicFunction(
        "pair_discriminator",
        semola.pair_discriminator,
        st.builds(lambda: {"in_features": 4, "hidden": 8}),
        {"in_features": CountArg(low=1), "hidden": CountArg(low=1)},
    ),
    PublicFunction(
        "make_rotation_points",
        semola.make_rotation_points,
        st.builds(lambda: {"num_samples": 12, "num_points": 2}),
        {"num_samples": CountArg(low=10), "num_points": CountArg(low=1)},
    ),
    PublicFunction(
        "make_no_symmetry_points",
        semola.make_no_symmetry_points,
        st.builds(lambda: {"num_samples": 12, "num_points": 2}),
        {"num_samples": CountArg(low=10), "num_points": CountArg(low=1)},
    ),
    PublicFunction(
        "make_so3_points",
        semola.make_so3_points,
        st.builds(lambda: {"num_samples": 12, "num_points": 2}),
        {"num_samples": CountArg(low=10), "num_points": CountArg(low=2)},
    ),
    PublicFunction(
        "make_n_body",
        semola.make_n_body,
        st.builds(lambda: {"num_samples": 12, "num_bodies": 2, "horizon": 0.05, "dt": 0.01}),
        {
            "num_samples": CountArg(low=10),
            "num_bodies": CountArg(low=2),
            "horizon": RealArg(low=1e-9),
            "dt": RealArg(low=1e-9),
        },
    ),
    PublicFunction(
        "make_task",
        semola.make_task,
        st.builds(lambda: {"name": "rotation2d", "num_samples": 12}),
        {"name": ChoiceArg(), "num_samples": CountArg(low=10)},
    ),
    PublicFunction(
        "make_digits",
        semola.make_digits,
        st.builds(lambda: {"max_samples": 20, "pad": 1}),
        {"max_samples": CountArg(low=10, optional=True), "pad": CountArg(low=0)},
        examples=1,
    ),
]

EXEMPT = {
    "METHODS": "a tuple of names",
    "TASKS": "a tuple of names",
    "AlgebraComparison": "result dataclass of compare_algebras",
    "AugmentedViews": "result dataclass of LieAugmenter.forward",
    "FitResult": "result dataclass of fit",
    "GroupAction": "abstract base; its subclasses' __call__ are registered",
    "LossTerms": "result dataclass of compute_loss",
    "SEMoLALossConfig": "configuration dataclass; validated in __post_init__",
    "SymmetrySignature": "result dataclass of symmetry_signature",
    "TaskData": "dataclass of generated tensors; built by the registered make_* functions",
    "TrainConfig": "configuration dataclass; validated in __post_init__",
    "__version__": "a string",
    "affine_generators": "takes no arguments",
    "so2_generator": "takes no arguments",
    "so3_generators": "takes no arguments",
    "build_trainer": "assembles modules from a TaskData and configs (no tensors of the caller's)",
    "evaluate": "runs a trainer over a TaskData built by the registered make_* functions",
    "fit": "a training loop over a TaskData; its batches go through the registered compute_loss",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("semola", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(semola, FUNCTIONS, EXEMPT) == []
