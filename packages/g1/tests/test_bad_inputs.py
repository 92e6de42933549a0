"""g1's public functions under kernelkit's bad-input harness (kernelkit.testing_inputs).

g1 takes names, counts and graphs; completions are text, fuzzed separately (test_parsing).
"""

import g1
import networkx as nx
from hypothesis import strategies as st

from kernelkit.testing import (
    ChoiceArg,
    CountArg,
    GraphArg,
    PublicFunction,
    RealArg,
    assert_handles_bad_inputs,
    uncovered_names,
)

TASK = "shortest_path"
SPEC = g1.resolve_task(TASK)


@st.composite
def graphs(draw):
    n = draw(st.integers(1, 7))
    graph = nx.gnp_random_graph(n, 0.5, seed=draw(st.integers(0, 100)))
    return graph


def instance_answers_itself(result, kwargs):
    if (
        g1.verify(result, "\\boxed{" + g1.format_answer(result.answer_type, result.answer) + "}")
        != 1
    ):
        raise AssertionError("the generated instance does not accept its own answer")


def one_reward_per_completion(result, kwargs):
    if len(result) != 2 or not all(r in (0.0, kwargs.get("weight", 1.0)) for r in result):
        raise AssertionError(f"rewards {result} are not one 0/weight score per completion")


def reward_columns():
    instance = g1.generate(TASK, 0, SPEC.min_nodes)
    record = instance.to_record()
    right = "\\boxed{" + g1.format_answer(instance.answer_type, instance.answer) + "}"
    return {name: [value, value] for name, value in record.items()}, [right, "no box"]


def format_rewards(weight):
    columns, completions = reward_columns()
    return g1.format_reward(["p", "p"], completions, weight=weight, **columns)


def correctness_rewards(format_weight):
    columns, completions = reward_columns()
    return [
        score
        for function in g1.reward_functions(format_weight=format_weight)
        for score in function(["p", "p"], completions, **columns)
    ]


FUNCTIONS = [
    PublicFunction(
        "generate",
        g1.generate,
        st.builds(
            lambda seed: {
                "task": TASK,
                "seed": seed,
                "n_nodes": SPEC.min_nodes,
                "split": "train",
                "encoding": "edge_list",
                "stage": "rl",
            },
            st.integers(0, 50),
        ),
        {
            "task": ChoiceArg(),
            "seed": CountArg(low=0),
            "n_nodes": CountArg(low=SPEC.min_nodes, high=SPEC.max_nodes, optional=True),
            "split": ChoiceArg(),
            "encoding": ChoiceArg(),
            "stage": ChoiceArg(),
        },
        postcondition=instance_answers_itself,
    ),
    PublicFunction(
        "generate_dataset",
        lambda tasks, **kw: list(g1.generate_dataset([tasks], **kw)),
        st.builds(
            lambda n: {"tasks": TASK, "n_per_task": n, "seed": 1, "split": "test"},
            st.integers(0, 2),
        ),
        {
            "tasks": ChoiceArg(),
            "n_per_task": CountArg(low=0),
            "seed": CountArg(low=0),
            "split": ChoiceArg(),
        },
    ),
    PublicFunction(
        "encode_graph",
        lambda graph, encoding: g1.encode_graph(graph, encoding=encoding),
        graphs().map(lambda graph: {"graph": graph, "encoding": "adjacency"}),
        {"graph": GraphArg(), "encoding": ChoiceArg()},
    ),
    PublicFunction(
        "structure_hash",
        g1.structure_hash,
        graphs().map(lambda graph: {"graph": graph, "iterations": 2}),
        {"graph": GraphArg(), "iterations": CountArg(low=0)},
    ),
    PublicFunction(
        "graph_split", g1.graph_split, graphs().map(lambda g: {"graph": g}), {"graph": GraphArg()}
    ),
    PublicFunction(
        "resolve_task", g1.resolve_task, st.builds(lambda: {"task": TASK}), {"task": ChoiceArg()}
    ),
    PublicFunction(
        "format_answer",
        g1.format_answer,
        st.builds(lambda: {"answer_type": "int", "answer": 3}),
        {"answer_type": ChoiceArg()},
    ),
    PublicFunction(
        "format_reward",
        format_rewards,
        st.builds(lambda: {"weight": 0.1}),
        {"weight": RealArg(low=0.0)},
        postcondition=one_reward_per_completion,
    ),
    PublicFunction(
        "reward_functions",
        correctness_rewards,
        st.builds(lambda: {"format_weight": 0.0}),
        {"format_weight": RealArg(low=0.0)},
    ),
]

EXEMPT = {
    "ENCODINGS": "a dict of encoders (encode_graph is registered)",
    "FAMILIES": "a dict of graph generators",
    "FLOAT_TOLERANCE": "a constant",
    "PROMPT_TEMPLATES": "a dict of templates",
    "TASKS": "a dict of task specs",
    "TASK_ALIASES": "a dict of names",
    "TIERS": "a dict of task names",
    "Instance": "a record; built by generate (registered) or from JSON (tested in test_generation)",
    "ParseError": "an exception class",
    "TaskSpec": "a task description dataclass",
    "Verification": "a result dataclass",
    "__version__": "a string",
    "correctness_reward": "text completions, fuzzed in test_parsing; its columns come from "
    "generate (registered via reward_functions)",
    "extract_boxed": "text; fuzzed in test_parsing (1 MB completions, brace soup)",
    "parse_literal": "text; fuzzed in test_parsing (exponent bombs, deep nesting)",
    "verify": "text completions, fuzzed in test_parsing; never raises on a completion",
    "verify_detailed": "as verify",
}


def test_bad_inputs(bad_input_table):
    bad_input_table("g1", FUNCTIONS, assert_handles_bad_inputs(FUNCTIONS))


def test_every_public_name_is_registered_or_exempt():
    assert uncovered_names(g1, FUNCTIONS, EXEMPT) == []
