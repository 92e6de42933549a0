"""faro: reward models trained under fairness constraints by a proxy-Lagrangian game.

Constraints (demographic parity, equalized odds, counterfactual) are defined on rates of
canonical preference events; ProxyGDA trains a reward model under them (a trl ``RewardTrainer``
subclass for transformers models, a plain-torch loop for linear models on features);
certificates bound the held-out violation; the policy view checks how reward fairness transfers
to the KL-regularised policy; the frontier sweeps the slack.
"""

from importlib.metadata import version

from faro.certificate import Certificate, ConstraintBound, certify
from faro.constraints import (
    Constraint,
    ConstraintEvaluation,
    Counterfactual,
    DemographicParity,
    EqualizedOdds,
    make_constraint,
)
from faro.data import (
    FeaturePairs,
    SyntheticCandidates,
    load_bbq,
    load_preferences,
    synthetic_candidates,
    synthetic_preferences,
    synthetic_text_preferences,
)
from faro.frontier import pareto_mask, plot_frontier, sweep_frontier
from faro.lagrangian import ProxyLagrangian
from faro.linear import (
    LinearRewardModel,
    LinearTrainingConfig,
    TrainingResult,
    stratified_order,
    train_linear,
)
from faro.metrics import brier_score, evaluate, expected_calibration_error
from faro.policy import beta_for_kl, group_selection_gap, kl_optimal_policy, policy_kl
from faro.scoring import PairScores, score_pairs

__version__ = version("faro-fairness-rm")

# the trainer pulls in trl and transformers (tens of seconds on a busy CPU), so it loads on first use
_TRAINER_NAMES = (
    "FairPreferenceCollator",
    "FaroConfig",
    "ProxyGDATrainer",
    "StratifiedGroupSampler",
)


def __getattr__(name: str):
    if name in _TRAINER_NAMES:
        from faro import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'faro' has no attribute {name!r}")


__all__ = [
    "Certificate",
    "Constraint",
    "ConstraintBound",
    "ConstraintEvaluation",
    "Counterfactual",
    "DemographicParity",
    "EqualizedOdds",
    "FairPreferenceCollator",
    "FaroConfig",
    "FeaturePairs",
    "LinearRewardModel",
    "LinearTrainingConfig",
    "PairScores",
    "ProxyGDATrainer",
    "ProxyLagrangian",
    "StratifiedGroupSampler",
    "SyntheticCandidates",
    "TrainingResult",
    "__version__",
    "beta_for_kl",
    "brier_score",
    "certify",
    "evaluate",
    "expected_calibration_error",
    "group_selection_gap",
    "kl_optimal_policy",
    "load_bbq",
    "load_preferences",
    "make_constraint",
    "pareto_mask",
    "plot_frontier",
    "policy_kl",
    "score_pairs",
    "stratified_order",
    "sweep_frontier",
    "synthetic_candidates",
    "synthetic_preferences",
    "synthetic_text_preferences",
    "train_linear",
]
