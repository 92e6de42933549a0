"""Instances: one graph, one query, the cached reference answer and optimum, and the prompt.

:func:`generate` is a pure function of ``(task, seed, split, n_nodes, source, encoding,
stage)``: all randomness comes from a :class:`random.Random` seeded with a string built from
them, which Python hashes the same way on every machine. The split is a function of the
graph's isomorphism class (:func:`g1.graphs.graph_split`); a draw whose graph belongs to the
other split is rejected and redrawn, so train and test never share a graph up to isomorphism.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

import networkx as nx

from g1.encodings import ENCODINGS, encode_graph
from g1.graphs import FAMILIES, FAMILY_MAX_NODES, graph_split, sample_graph
from g1.prompts import FORMAT_SENTENCES, STAGES, render_prompt
from g1.tasks import TASKS, Resample, TaskSpec, resolve_task

__all__ = [
    "SPLITS",
    "Instance",
    "generate",
    "generate_dataset",
    "graph_from_json",
    "graph_to_json",
]

SPLITS = ("train", "test")
_MAX_ATTEMPTS = 500
_SECOND_GRAPH_OFFSET = 100


@dataclass
class Instance:
    """One generated problem.

    ``graph`` has nodes ``1..n`` (isolated ones kept) and a ``weight`` on every edge when the
    task is weighted; ``query`` holds the task's arguments; ``answer`` is one reference answer
    (JSON-ready) and ``optimum`` the optimal size/weight/length for minimum/maximum tasks
    (``None`` otherwise); ``second_graph`` is set only for ``isomorphic_mapping``.
    """

    task: str
    tier: str
    answer_type: str
    graph: nx.Graph
    query: dict[str, Any]
    answer: Any
    optimum: float | None
    prompt: str
    seed: int = 0
    split: str = "train"
    source: str = ""
    encoding: str = "edge_list"
    stage: str = "rl"
    second_graph: nx.Graph | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> TaskSpec:
        return TASKS[self.task]

    def to_record(self) -> dict[str, Any]:
        """A flat row of strings and numbers (for JSONL, ``datasets`` and trl's reward kwargs)."""
        graphs = {"graph": graph_to_json(self.graph)}
        if self.second_graph is not None:
            graphs["second_graph"] = graph_to_json(self.second_graph)
        return {
            "prompt": self.prompt,
            "task": self.task,
            "tier": self.tier,
            "answer_type": self.answer_type,
            "graph": json.dumps(graphs, separators=(",", ":")),
            "query": json.dumps(self.query, sort_keys=True),
            "answer": json.dumps(self.answer),
            "optimum": self.optimum,
            "seed": self.seed,
            "split": self.split,
            "source": self.source,
            "encoding": self.encoding,
            "stage": self.stage,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Instance:
        """Rebuild an instance from :meth:`to_record`'s row; raises ``ValueError`` if malformed."""
        missing = [key for key in ("task", "graph", "query", "answer") if key not in record]
        if missing:
            raise ValueError(f"record lacks the fields {missing}; got fields {sorted(record)}")
        spec = resolve_task(record["task"])
        graph, second_graph = _graphs_from_text(record["graph"])
        optimum = record.get("optimum")
        return cls(
            task=spec.name,
            tier=spec.tier,
            answer_type=spec.answer_type,
            graph=graph,
            query=json.loads(record["query"]),
            answer=json.loads(record["answer"]),
            optimum=None if optimum is None else float(optimum),
            prompt=record.get("prompt", ""),
            seed=int(record.get("seed", 0)),
            split=record.get("split", "train"),
            source=record.get("source", ""),
            encoding=record.get("encoding", "edge_list"),
            stage=record.get("stage", "rl"),
            second_graph=second_graph,
        )

    def relabel(self, mapping: Mapping[int, int]) -> Instance:
        """The same problem with the first graph's nodes renamed by ``mapping`` (a permutation)."""
        if sorted(mapping) != sorted(self.graph.nodes) or sorted(mapping.values()) != sorted(
            self.graph.nodes
        ):
            raise ValueError("mapping must be a permutation of the graph's nodes")
        graph = nx.relabel_nodes(self.graph, dict(mapping), copy=True)
        graph.graph["edge_order"] = [
            [mapping[u], mapping[v], *rest]
            for u, v, *rest in self.graph.graph.get("edge_order", [])
        ] or None
        query = {
            key: mapping[value] if key in ("node", "u", "v", "source", "target") else value
            for key, value in self.query.items()
        }
        relabelled = replace(
            self,
            graph=graph,
            query=query,
            answer=relabel_answer(self.answer_type, self.answer, mapping),
        )
        relabelled.prompt = build_prompt(relabelled)
        return relabelled


def relabel_answer(answer_type: str, answer: Any, mapping: Mapping[int, int]) -> Any:
    """Rename the nodes of an answer (node lists, edge lists, mapping keys); scalars unchanged."""
    if answer_type in ("node_set", "node_list"):
        return [mapping[node] for node in answer]
    if answer_type == "edge_list":
        return [[mapping[u], mapping[v]] for u, v in answer]
    if answer_type == "mapping":
        return {str(mapping[int(key)]): value for key, value in answer.items()}
    return answer


def graph_to_json(graph: nx.Graph) -> dict[str, Any]:
    """``{"directed", "nodes", "edges"}``; weighted edges are ``[u, v, w]``, in the stored order."""
    from g1.encodings import ordered_edges

    edges = []
    for u, v in ordered_edges(graph):
        weight = graph[u][v].get("weight")
        edges.append([u, v] if weight is None else [u, v, weight])
    return {"directed": graph.is_directed(), "nodes": sorted(graph.nodes), "edges": edges}


def graph_from_json(data: Mapping[str, Any]) -> nx.Graph:
    """Inverse of :func:`graph_to_json`."""
    graph = nx.DiGraph() if data.get("directed") else nx.Graph()
    graph.add_nodes_from(int(node) for node in data["nodes"])
    order = []
    for edge in data["edges"]:
        if len(edge) == 3:
            graph.add_edge(int(edge[0]), int(edge[1]), weight=edge[2])
        else:
            graph.add_edge(int(edge[0]), int(edge[1]))
        order.append([int(edge[0]), int(edge[1])])
    graph.graph["edge_order"] = order
    return graph


@lru_cache(maxsize=4096)
def _graphs_from_text(text: str) -> tuple[nx.Graph, nx.Graph | None]:
    # Rewards see the same graph column once per generation of a group; parse it once.
    data = json.loads(text)
    second = data.get("second_graph")
    return graph_from_json(data["graph"]), (graph_from_json(second) if second else None)


def build_prompt(instance: Instance) -> str:
    """Render ``instance.prompt`` from its task, graph(s), query, encoding and stage."""
    spec = instance.spec
    text = encode_graph(instance.graph, weighted=spec.weighted, encoding=instance.encoding)
    if instance.second_graph is not None:
        second = encode_graph(
            instance.second_graph, weighted=spec.weighted, encoding=instance.encoding
        )
        text = f"The first graph: {text}\nThe second graph: {second}"
    return render_prompt(
        instance.stage,
        description=spec.description,
        graph=text,
        question=spec.question.format(**instance.query),
        format_sentence=FORMAT_SENTENCES[spec.answer_type],
    )


def _check_choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _check_seed_and_choices(seed: Any, split: Any, encoding: Any, stage: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    _check_choice("split", split, SPLITS)
    _check_choice("encoding", encoding, list(ENCODINGS))
    _check_choice("stage", stage, STAGES)


def _node_range(spec: TaskSpec, family: str) -> tuple[int, int]:
    return spec.min_nodes, min(spec.max_nodes, FAMILY_MAX_NODES.get(family, spec.max_nodes))


def _shuffled_edge_order(graph: nx.Graph, rng: random.Random) -> None:
    order = [list(edge) for edge in sorted(graph.edges)]
    rng.shuffle(order)
    if not graph.is_directed():
        order = [edge if rng.random() < 0.5 else edge[::-1] for edge in order]
    graph.graph["edge_order"] = order


def generate(
    task: str,
    seed: int,
    n_nodes: int | None = None,
    source: str | None = None,
    *,
    split: str = "train",
    encoding: str = "edge_list",
    stage: str = "rl",
) -> Instance:
    """A deterministic instance of ``task`` for ``seed`` in ``split``.

    ``n_nodes`` fixes the size (else drawn uniformly from the task's range, 5-35 nodes by
    default, capped per task where the oracle is exponential); ``source`` fixes the graph family
    (else drawn from the task's families). Raises ``ValueError`` for unknown names or sizes
    outside the task's range.
    """
    spec = resolve_task(task)
    _check_seed_and_choices(seed, split, encoding, stage)
    if source is not None:
        if source not in FAMILIES:
            raise ValueError(f"source must be one of {sorted(FAMILIES)}, got {source!r}")
        if source not in spec.families:
            raise ValueError(
                f"source must be one of {list(spec.families)} for task {spec.name!r}, got {source!r}"
            )
    if n_nodes is not None:
        families = [source] if source else list(spec.families)
        upper = max(_node_range(spec, family)[1] for family in families)
        if (
            isinstance(n_nodes, bool)
            or not isinstance(n_nodes, int)
            or not spec.min_nodes <= n_nodes <= upper
        ):
            raise ValueError(
                f"n_nodes must be an int in [{spec.min_nodes}, {upper}] for task {spec.name!r}, got {n_nodes!r}"
            )
    rng = random.Random(f"g1|{spec.name}|{seed}|{split}|{n_nodes}|{source}")
    for _ in range(_MAX_ATTEMPTS):
        family = source or rng.choice(spec.families)
        low, high = _node_range(spec, family)
        if n_nodes is not None and not low <= n_nodes <= high:
            continue
        size = n_nodes if n_nodes is not None else rng.randint(low, high)
        try:
            instance = _draw(
                spec, family, size, rng, split=split, encoding=encoding, stage=stage, seed=seed
            )
        except Resample:
            continue
        if instance is not None:
            return instance
    raise RuntimeError(
        f"no {split} instance of {spec.name!r} found in {_MAX_ATTEMPTS} draws "
        f"(n_nodes={n_nodes!r}, source={source!r}); try another size or family"
    )


def _draw(
    spec: TaskSpec, family: str, size: int, rng: random.Random, **fields: Any
) -> Instance | None:
    graph = sample_graph(family, size, rng)
    if spec.connected:
        from g1.tasks import _connect

        graph = _connect(graph, rng)
    if spec.no_isolated:
        from g1.tasks import _no_isolated

        graph = _no_isolated(graph, rng)
    if spec.prepare is not None:
        graph = spec.prepare(graph, rng)
    if graph.number_of_edges() == 0:
        raise Resample("graph without edges")
    if spec.weighted:
        for u, v in sorted(graph.edges):
            graph[u][v]["weight"] = rng.randint(1, spec.max_weight)
    if graph_split(graph) != fields["split"]:
        return None
    _shuffled_edge_order(graph, rng)
    query = spec.query(graph, rng)
    second_graph = None
    if spec.name == "isomorphic_mapping":
        labels = list(range(_SECOND_GRAPH_OFFSET + 1, _SECOND_GRAPH_OFFSET + size + 1))
        rng.shuffle(labels)
        second_graph = nx.relabel_nodes(graph, dict(zip(sorted(graph.nodes), labels, strict=True)))
        second_graph = nx.Graph(second_graph.subgraph(sorted(second_graph.nodes)))
        _shuffled_edge_order(second_graph, rng)
    answer, optimum = spec.oracle(graph, query, second_graph)
    instance = Instance(
        task=spec.name,
        tier=spec.tier,
        answer_type=spec.answer_type,
        graph=graph,
        query=query,
        answer=answer,
        optimum=optimum,
        prompt="",
        source=family,
        second_graph=second_graph,
        **fields,
    )
    instance.prompt = build_prompt(instance)
    return instance


def generate_dataset(
    tasks: Sequence[str] | None = None,
    n_per_task: int = 100,
    seed: int = 0,
    split: str = "train",
    *,
    encoding: str = "edge_list",
    stage: str = "rl",
    n_nodes: int | None = None,
) -> Iterator[Instance]:
    """Stream ``n_per_task`` instances of each task (all 50 by default), task by task.

    Instance ``i`` of a task uses seed ``seed * 1_000_003 + i``, so datasets with different
    seeds do not overlap in seeds and a prefix of a dataset is a smaller dataset.
    """
    names = []
    for position, task in enumerate(tasks if tasks is not None else TASKS):
        try:
            names.append(resolve_task(task).name)
        except (TypeError, ValueError) as error:
            raise type(error)(f"tasks[{position}]: {error}") from None
    if isinstance(n_per_task, bool) or not isinstance(n_per_task, int) or n_per_task < 0:
        raise ValueError(f"n_per_task must be a non-negative int, got {n_per_task!r}")
    _check_seed_and_choices(seed, split, encoding, stage)
    # Checked here, not at the first next(): a bad argument fails where the dataset is made.
    return (
        generate(
            name, seed * 1_000_003 + index, n_nodes, split=split, encoding=encoding, stage=stage
        )
        for name in names
        for index in range(n_per_task)
    )
