"""faro's public functions under kernelkit's bad-input harness (see kernelkit.testing_inputs)."""

import faro
import torch
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


@st.composite
def calibration(draw):
    n = draw(st.integers(1, 12))
    return {
        "probabilities": draw(tensors(shape=(n,), min_value=0, max_value=1)),
        "outcomes": torch.tensor(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n))),
    }


@st.composite
def rewards(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(2, 5)))
    return {"rewards": draw(tensors(shape=shape, min_value=-2, max_value=2))}


@st.composite
def policies(draw):
    shape = (draw(st.integers(1, 4)), draw(st.integers(2, 5)))
    weights = draw(tensors(shape=shape, min_value=0.125, max_value=1))
    group = draw(tensors(shape=shape, dtype=torch.int64, min_value=0, max_value=1))
    return {"policy": weights / weights.sum(1, keepdim=True), "candidate_group": group}


@st.composite
def pairs(draw, with_label=False):
    """The tensors of a FeaturePairs: two groups, both present, labels in {0, 1}."""
    n, d = draw(st.integers(4, 10)), draw(st.integers(1, 4))
    group = torch.tensor([0, 1, *draw(st.lists(st.integers(0, 1), min_size=n - 2, max_size=n - 2))])
    out = {
        "chosen": draw(tensors(shape=(n, d))),
        "rejected": draw(tensors(shape=(n, d))),
        "group": group,
        "orientation": torch.tensor(
            draw(st.lists(st.sampled_from([-1, 1]), min_size=n, max_size=n))
        ),
    }
    if with_label:
        out["label"] = torch.tensor([0, 1] * (n // 2) + [0] * (n % 2))
    out["model"] = linear_model(d)
    return out


def feature_pairs(chosen, rejected, group, orientation, label=None, model=None):
    return faro.FeaturePairs(chosen, rejected, group, orientation, label=label)


def linear_model(num_features):
    torch.manual_seed(0)
    return faro.LinearRewardModel(num_features)


def margins(with_label=False, twins=False):
    @st.composite
    def build(draw):
        n = draw(st.integers(2, 10))
        out = {
            "margin": draw(tensors(shape=(n,))),
            "group": torch.tensor(
                [0, 1, *draw(st.lists(st.integers(0, 1), min_size=n - 2, max_size=n - 2))]
            ),
        }
        if with_label:
            out["label"] = torch.tensor(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
        if twins:
            out["twin_margin"] = draw(tensors(shape=(n,)))
        return out

    return build()


PROBABILITIES = {
    "probabilities": TensorArg(ndim=1),
    "outcomes": IdsArg(high=2, ndim=1, float_ok=True),
}
PAIRS = {
    "chosen": TensorArg(ndim=2),
    "rejected": TensorArg(ndim=2),
    "group": IdsArg(high=None, ndim=1),
}
CONSTRAINT_PAIRS = {**PAIRS, "group": IdsArg(high=2, ndim=1)}
MARGINS = {"margin": TensorArg(ndim=1), "group": IdsArg(high=2, ndim=1)}

FUNCTIONS = [
    PublicFunction("brier_score", faro.brier_score, calibration(), PROBABILITIES),
    PublicFunction(
        "expected_calibration_error",
        faro.expected_calibration_error,
        calibration().map(lambda kw: {**kw, "num_bins": 5}),
        {**PROBABILITIES, "num_bins": CountArg(low=1)},
    ),
    PublicFunction(
        "kl_optimal_policy",
        faro.kl_optimal_policy,
        rewards().map(lambda kw: {**kw, "beta": 0.5}),
        {"rewards": TensorArg(ndim=2), "beta": RealArg(low=1e-9)},
    ),
    PublicFunction(
        "policy_kl",
        lambda policy: faro.policy_kl(policy),
        policies().map(lambda kw: {"policy": kw["policy"]}),
        {"policy": TensorArg(ndim=2)},
    ),
    PublicFunction(
        "group_selection_gap",
        faro.group_selection_gap,
        policies(),
        {"policy": TensorArg(ndim=2), "candidate_group": IdsArg(high=None, ndim=2)},
    ),
    PublicFunction(
        "beta_for_kl",
        lambda rewards, target_kl: faro.beta_for_kl(rewards, target_kl, max_iterations=30),
        rewards().map(
            lambda kw: {
                "rewards": kw["rewards"] * 3 + torch.arange(kw["rewards"].shape[1]),
                "target_kl": 0.05,
            }
        ),
        {"rewards": TensorArg(ndim=2), "target_kl": RealArg(low=1e-9)},
    ),
    PublicFunction(
        "stratified_order",
        lambda group: faro.stratified_order(group, torch.Generator().manual_seed(0)),
        pairs().map(lambda kw: {"group": kw["group"]}),
        {"group": IdsArg(high=None, ndim=1)},
    ),
    PublicFunction(
        "pareto_mask",
        faro.pareto_mask,
        st.builds(
            lambda: {
                "accuracy": torch.tensor([0.9, 0.8, 0.7]),
                "unfairness": torch.tensor([0.3, 0.1, 0.2]),
            }
        ),
        {"accuracy": TensorArg(ndim=1), "unfairness": TensorArg(ndim=1)},
    ),
    PublicFunction(
        "synthetic_preferences",
        lambda num_pairs, protected_share: faro.synthetic_preferences(
            num_pairs, protected_share=protected_share
        ),
        st.builds(lambda: {"num_pairs": 8, "protected_share": 0.3}),
        {"num_pairs": CountArg(low=1), "protected_share": RealArg(low=0.0, high=1.0)},
    ),
    PublicFunction(
        "synthetic_candidates",
        faro.synthetic_candidates,
        st.builds(lambda: {"num_prompts": 3, "num_candidates": 4}),
        {"num_prompts": CountArg(low=1), "num_candidates": CountArg(low=2)},
    ),
    PublicFunction(
        "make_constraint",
        lambda name, epsilon, num_groups: faro.make_constraint(
            name, epsilon, num_groups=num_groups
        ),
        st.builds(lambda: {"name": "demographic_parity", "epsilon": 0.1, "num_groups": 3}),
        {"name": ChoiceArg(), "epsilon": RealArg(low=0.0), "num_groups": CountArg(low=2)},
    ),
    PublicFunction(
        "DemographicParity.evaluate",
        lambda margin, group: faro.DemographicParity(0.1).evaluate(margin, group),
        margins(),
        MARGINS,
    ),
    PublicFunction(
        "EqualizedOdds.evaluate",
        lambda margin, group, label: faro.EqualizedOdds(0.1).evaluate(margin, group, label),
        margins(with_label=True),
        {**MARGINS, "label": IdsArg(high=2, ndim=1)},
    ),
    PublicFunction(
        "Counterfactual.evaluate",
        lambda margin, group, twin_margin: faro.Counterfactual(0.1).evaluate(
            margin, group, twin_margin=twin_margin
        ),
        margins(twins=True),
        {**MARGINS, "twin_margin": TensorArg(ndim=1)},
    ),
    PublicFunction(
        "LinearRewardModel.forward",
        lambda model, features: model(features),
        pairs().map(lambda kw: {"model": kw["model"], "features": kw["chosen"]}),
        {
            "features": TensorArg(
                dtypes=(torch.float16, torch.float32, torch.float64), nan="propagate"
            )
        },
    ),
    PublicFunction(
        "ProxyLagrangian.penalty",
        lambda proxy_violations: faro.ProxyLagrangian(3).penalty(proxy_violations),
        st.builds(lambda: {"proxy_violations": torch.tensor([0.1, -0.2, 0.3])}),
        {"proxy_violations": TensorArg(ndim=1)},
    ),
    PublicFunction(
        "score_pairs",
        lambda **kw: faro.score_pairs(kw["model"], feature_pairs(**kw)),
        pairs(),
        PAIRS,
    ),
    PublicFunction(
        "evaluate",
        lambda num_bins, **kw: faro.evaluate(
            kw["model"],
            feature_pairs(**kw),
            [faro.DemographicParity(0.1)],
            num_bins=num_bins,
        ),
        pairs().map(lambda kw: {**kw, "num_bins": 4}),
        {**CONSTRAINT_PAIRS, "num_bins": CountArg(low=1)},
    ),
    PublicFunction(
        "certify",
        lambda delta, **kw: faro.certify(
            kw["model"],
            feature_pairs(**kw),
            faro.DemographicParity(0.1),
            delta,
        ),
        pairs().map(lambda kw: {**kw, "delta": 0.05}),
        {**CONSTRAINT_PAIRS, "delta": RealArg(low=1e-9, high=1 - 1e-9)},
    ),
    PublicFunction(
        "train_linear",
        lambda steps, **kw: faro.train_linear(
            feature_pairs(**kw),
            faro.DemographicParity(0.1),
            faro.LinearTrainingConfig(steps=steps, eval_every=1),
            show_progress=False,
        ),
        pairs().map(lambda kw: {**kw, "steps": 3}),
        {**CONSTRAINT_PAIRS, "steps": CountArg(low=1)},
        examples=1,
    ),
]

EXEMPT = {
    "Certificate": "result dataclass of certify",
    "Constraint": "abstract base; its subclasses' evaluate methods are registered",
    "ConstraintBound": "result dataclass of certify",
    "ConstraintEvaluation": "result dataclass of Constraint.evaluate",
    "FaroConfig": "a transformers TrainingArguments subclass (configuration)",
    "FairPreferenceCollator": "collates tokenizer output for ProxyGDATrainer; tested in test_trainer",
    "FeaturePairs": "dataclass; its checks run in every registration that takes pairs",
    "LinearTrainingConfig": "configuration dataclass; validated in __post_init__",
    "PairScores": "result dataclass of score_pairs",
    "ProxyGDATrainer": "a transformers Trainer subclass; tested in test_trainer",
    "StratifiedGroupSampler": "a torch Sampler over a list of group ints; tested in test_trainer",
    "SyntheticCandidates": "result dataclass of synthetic_candidates",
    "TrainingResult": "result dataclass of train_linear",
    "__version__": "a string",
    "load_bbq": "reads BBQ JSON files; malformed files are tested in test_bbq",
    "load_preferences": "reads a JSONL file; malformed files are tested in test_linear",
    "plot_frontier": "draws rows of already-computed metrics onto matplotlib axes",
    "synthetic_text_preferences": (
        "builds a datasets.Dataset (importing datasets takes seconds); its num_pairs and "
        "protected_share checks are tested in test_trainer"
    ),
    "sweep_frontier": "runs train_linear over a grid; its inputs are the pairs train_linear checks",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("faro", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(faro, FUNCTIONS, EXEMPT) == []
