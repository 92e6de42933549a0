"""semola: discover unknown symmetries with learnable Lie-algebra augmentations, encode them softly."""

from importlib.metadata import version

from semola.actions import CallableAction, GroupAction, ImageAction, VectorAction
from semola.augmenter import AugmentedViews, LieAugmenter, trace_norm
from semola.data import (
    TASKS,
    TaskData,
    affine_generators,
    make_digits,
    make_n_body,
    make_no_symmetry_points,
    make_rotation_points,
    make_so3_points,
    make_task,
    so2_generator,
    so3_generators,
)
from semola.loss import (
    SEMoLALossConfig,
    augmentation_loss,
    equivariance_loss,
    orthogonality_loss,
    sparsity_loss,
)
from semola.model import (
    AugmentedTraining,
    LieGAN,
    LossTerms,
    PlainModel,
    SEMoLA,
    pair_discriminator,
)
from semola.readout import (
    AlgebraComparison,
    SymmetrySignature,
    closure_error,
    compare_algebras,
    symmetry_signature,
)
from semola.training import (
    METHODS,
    FitResult,
    TrainConfig,
    build_trainer,
    evaluate,
    fit,
    point_mlp,
    small_cnn,
)

__version__ = version("semola")

__all__ = [
    "METHODS",
    "TASKS",
    "AlgebraComparison",
    "AugmentedTraining",
    "AugmentedViews",
    "CallableAction",
    "FitResult",
    "GroupAction",
    "ImageAction",
    "LieAugmenter",
    "LieGAN",
    "LossTerms",
    "PlainModel",
    "SEMoLA",
    "SEMoLALossConfig",
    "SymmetrySignature",
    "TaskData",
    "TrainConfig",
    "VectorAction",
    "__version__",
    "affine_generators",
    "augmentation_loss",
    "build_trainer",
    "closure_error",
    "compare_algebras",
    "equivariance_loss",
    "evaluate",
    "fit",
    "make_digits",
    "make_n_body",
    "make_no_symmetry_points",
    "make_rotation_points",
    "make_so3_points",
    "make_task",
    "orthogonality_loss",
    "pair_discriminator",
    "point_mlp",
    "small_cnn",
    "so2_generator",
    "so3_generators",
    "sparsity_loss",
    "symmetry_signature",
    "trace_norm",
]
