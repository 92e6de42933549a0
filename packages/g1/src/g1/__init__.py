"""g1: the G1/Erdős 50-task graph-reasoning suite with one strict verifier and GRPO training.

Generate deterministic graph problems (:func:`generate`, :func:`generate_dataset`), score
completions with one verifier shared by rewards and evaluation (:func:`verify`,
:func:`verify_detailed`), and train with trl's GRPO trainer (:func:`reward_functions`).
"""

from importlib.metadata import version

from g1.encodings import ENCODINGS, encode_graph
from g1.graphs import FAMILIES, graph_split, structure_hash
from g1.instance import Instance, generate, generate_dataset
from g1.parsing import ParseError, extract_boxed, parse_literal
from g1.prompts import PROMPT_TEMPLATES, format_answer
from g1.rewards import correctness_reward, format_reward, reward_functions
from g1.tasks import FLOAT_TOLERANCE, TASK_ALIASES, TASKS, TIERS, TaskSpec, resolve_task
from g1.verify import Verification, verify, verify_detailed

__version__ = version("g1")

__all__ = [
    "ENCODINGS",
    "FAMILIES",
    "FLOAT_TOLERANCE",
    "PROMPT_TEMPLATES",
    "TASKS",
    "TASK_ALIASES",
    "TIERS",
    "Instance",
    "ParseError",
    "TaskSpec",
    "Verification",
    "__version__",
    "correctness_reward",
    "encode_graph",
    "extract_boxed",
    "format_answer",
    "format_reward",
    "generate",
    "generate_dataset",
    "graph_split",
    "parse_literal",
    "resolve_task",
    "reward_functions",
    "structure_hash",
    "verify",
    "verify_detailed",
]
