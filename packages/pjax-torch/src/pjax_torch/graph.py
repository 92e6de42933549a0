"""The traced computation graph and the projections of its colour classes.

Nodes are objects (identity by object, so two equal-looking constants never merge):

* :class:`Parameter` and :class:`Constant` are leaves. A parameter's constraint is consensus
  (all copies of it equal; its projection is their mean); a constant's copies are reset to data.
* :class:`Operation` is a constraint "output = f(inputs)" with a registered projection. It owns
  one *copy* of each of its inputs: these per-edge copies are the variables the algorithms move.
* :class:`Transform` is a shape change that copies entries (reshape, permute, broadcast, concat,
  gather, patch extraction). It is not a constraint: values pass forward through it and copies
  come back through its adjoint, a sum over the copies of each entry.

Removing transforms leaves a graph on leaves and operations. A *class* is a set of those
vertices with no edge inside it, so its projections touch disjoint variables and can run at
once. Projecting a class means, for every vertex in it: average the copies its consumers hold of
its output (sum through the adjoints divided by the number of copies), project (inputs, averaged
output) onto the operation's graph, and write f(new inputs) back into every consumer's copy.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from pjax_torch.ops import OperationSpec, bilinear, identity, quantize, sum_relu
from pjax_torch.ops import max as max_op
from pjax_torch.ops import sum as sum_op

State = dict["Operation", tuple[torch.Tensor, ...]]
ConsensusWeight = Literal["one", "count"]
Sweep = Literal["batched", "per_node"]

# Projections split into (prepare, solve, finish) stages: ``prepare`` reduces one node's inputs
# to per-entry scalars (plus the vectors ``finish`` needs), ``solve`` works on any flat batch
# of those scalars, and ``finish`` returns the node's projection from its slice of the solution.
STAGED_OPERATIONS = {
    bilinear._project: (bilinear._prepare, bilinear._solve, bilinear._finish),
    sum_op._project: (sum_op._prepare, sum_op._solve, sum_op._finish),
    sum_relu._project: (sum_relu._prepare, sum_relu._solve, sum_relu._finish),
}
# Operations whose members are concatenated row by row when their fan-in is equal.
ROW_OPERATIONS = {max_op._project}
# Elementwise operations: every entry is its own row, and members are concatenated.
ELEMENTWISE_OPERATIONS = {identity._project, quantize._project}


class GraphColouringError(ValueError):
    """The graph cannot be split into the colour classes the chosen algorithm needs."""


class Node:
    """A value in the traced graph; ``value`` is its forward-pass tensor."""

    parents: tuple[Node, ...] = ()

    def __init__(self, value: torch.Tensor):
        self.value = value

    @property
    def shape(self) -> torch.Size:
        return self.value.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.value.dtype

    @property
    def ndim(self) -> int:
        return self.value.ndim

    def describe(self) -> str:
        return f"{type(self).__name__}{tuple(self.shape)}"


class Parameter(Node):
    """A trainable leaf; its projection averages the copies held by its consumers."""

    def __init__(self, value: torch.Tensor, name: str):
        super().__init__(value)
        self.name = name

    def describe(self) -> str:
        return f"Parameter {self.name!r}{tuple(self.shape)}"


class Constant(Node):
    """A data leaf; its projection resets its consumers' copies to the data."""

    def __init__(self, value: torch.Tensor, name: str | None = None):
        super().__init__(value)
        self.name = name

    def describe(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"Constant{label}{tuple(self.shape)}"


class Operation(Node):
    """A constraint node: ``value = spec.forward(*parent values, **kwargs)``."""

    def __init__(self, spec: OperationSpec, parents: Sequence[Node], kwargs: dict | None = None):
        self.spec = spec
        self.parents = tuple(parents)
        self.kwargs = dict(kwargs or {})
        super().__init__(spec.forward(*(p.value for p in self.parents), **self.kwargs))

    def describe(self) -> str:
        return f"Operation {self.spec.name!r}{tuple(self.shape)}"


class Transform(Node):
    """A shape transform: ``forward(*parent values)`` copies entries; ``adjoint`` sums copies back."""

    def __init__(
        self,
        name: str,
        parents: Sequence[Node],
        forward: Callable[..., torch.Tensor],
        adjoint: Callable[[torch.Tensor], tuple[torch.Tensor, ...]],
    ):
        self.name = name
        self.parents = tuple(parents)
        self.forward = forward
        self.adjoint = adjoint
        super().__init__(forward(*(p.value for p in self.parents)))

    def describe(self) -> str:
        return f"Transform {self.name!r}{tuple(self.shape)}"


def _is_vertex(node: Node) -> bool:
    return not isinstance(node, Transform)


class Graph:
    """A traced graph compiled for projection sweeps.

    ``outputs`` are the final nodes (usually output constraints). ``consensus_weight`` is the
    weight on an operation's output term: ``"one"`` as in the reference code, or ``"count"``,
    the number of copies of the output, which makes each node's step the exact projection in
    the product space of copies. ``sweep`` is ``"batched"`` (one projection call per group of
    like operations in a class) or ``"per_node"`` (one call per operation; the reference).
    """

    def __init__(
        self,
        outputs: Node | Sequence[Node],
        consensus_weight: ConsensusWeight = "one",
        sweep: Sweep = "batched",
    ):
        if consensus_weight not in ("one", "count"):
            raise ValueError(f"consensus_weight must be 'one' or 'count', got {consensus_weight!r}")
        if sweep not in ("batched", "per_node"):
            raise ValueError(f"sweep must be 'batched' or 'per_node', got {sweep!r}")
        self.sweep = sweep
        self._groups: dict[tuple[int, ...], list[SweepGroup]] = {}
        outputs = [outputs] if isinstance(outputs, Node) else list(outputs)
        if not outputs or not all(isinstance(o, Node) for o in outputs):
            raise TypeError(
                f"outputs must be a Node or a non-empty sequence of Nodes, got {outputs!r:.200}"
            )
        self.outputs = outputs
        self.consensus_weight = consensus_weight
        self.nodes = self._collect(outputs)
        self.children: dict[Node, list[tuple[Node, int]]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for slot, parent in enumerate(node.parents):
                self.children[parent].append((node, slot))
        self.vertices = [n for n in self.nodes if _is_vertex(n)]
        self.operations = [n for n in self.vertices if isinstance(n, Operation)]
        self.parameters = {n.name: n for n in self.vertices if isinstance(n, Parameter)}
        self.slot_sources = {op: [self._sources(p) for p in op.parents] for op in self.operations}
        self.neighbours: dict[Node, set[Node]] = {v: set() for v in self.vertices}
        self.consumers: dict[Node, list[Operation]] = {v: [] for v in self.vertices}
        for op in self.operations:
            for sources in self.slot_sources[op]:
                for source in sources:
                    self.neighbours[op].add(source)
                    self.neighbours[source].add(op)
                    if op not in self.consumers[source]:
                        self.consumers[source].append(op)
        ones = {op: tuple(torch.ones_like(p.value) for p in op.parents) for op in self.operations}
        memo: dict = {}
        self.copy_counts = {v: self._pull(v, ones, memo) for v in self.vertices if self.children[v]}

    @staticmethod
    def _collect(outputs: Iterable[Node]) -> list[Node]:
        """Every node reachable from ``outputs``, parents before children."""
        order: list[Node] = []
        seen: set[int] = set()
        for root in outputs:
            stack = [(root, False)]
            while stack:
                node, expanded = stack.pop()
                if expanded:
                    order.append(node)
                    continue
                if id(node) in seen:
                    continue
                seen.add(id(node))
                stack.append((node, True))
                stack.extend((p, False) for p in reversed(node.parents) if id(p) not in seen)
        return order

    def _sources(self, node: Node) -> set[Node]:
        if _is_vertex(node):
            return {node}
        return set().union(*(self._sources(p) for p in node.parents))

    def initial_state(self) -> State:
        """Every copy initialised from the forward pass."""
        return {op: tuple(p.value for p in op.parents) for op in self.operations}

    # --- gathering copies and pushing values -------------------------------------------------

    def _pull(self, node: Node, state: State, memo: dict) -> torch.Tensor:
        """The sum over all copies that consumers hold of ``node``'s value."""
        if node in memo:
            return memo[node]
        total = None
        for child, slot in self.children[node]:
            if isinstance(child, Operation):
                part = state[child][slot]
            else:
                if (child, "adjoint") not in memo:
                    memo[(child, "adjoint")] = child.adjoint(self._pull(child, state, memo))
                part = memo[(child, "adjoint")][slot]
            total = part if total is None else total + part
        memo[node] = total
        return total

    def consensus(self, node: Node, state: State, memo: dict | None = None) -> torch.Tensor:
        """The mean of all copies of ``node``'s value held in ``state``."""
        return self._pull(node, state, {} if memo is None else memo) / self.copy_counts[node]

    def _evaluate(self, node: Node, values: dict, memo: dict) -> torch.Tensor:
        if node in values:
            return values[node]
        if node in memo:
            return memo[node]
        if _is_vertex(node):
            raise RuntimeError(f"{node.describe()} has no value in this sweep")
        result = node.forward(*(self._evaluate(p, values, memo) for p in node.parents))
        memo[node] = result
        return result

    def project_class(self, state: State, members: Sequence[Node]) -> State:
        """Project every vertex of one colour class at once; returns the new state."""
        pull_memo: dict = {}
        values: dict[Node, torch.Tensor] = {}
        new_state = dict(state)
        requests: dict[Operation, tuple] = {}  # operation -> (inputs, target, weight)
        for vertex in members:
            if isinstance(vertex, Constant):
                values[vertex] = vertex.value
            elif isinstance(vertex, Parameter):
                if self.children[vertex]:
                    values[vertex] = self.consensus(vertex, state, pull_memo)
            elif vertex.spec.is_output_constraint:
                new_state[vertex] = vertex.spec.project(*state[vertex], **vertex.kwargs).point
            else:
                inputs = state[vertex]
                if self.children[vertex]:
                    target = self.consensus(vertex, state, pull_memo)
                    weight = self.copy_counts[vertex] if self.consensus_weight == "count" else 1.0
                else:
                    target, weight = vertex.spec.forward(*inputs, **vertex.kwargs), 1.0
                requests[vertex] = (inputs, target, weight)
        if self.sweep == "per_node":
            for vertex, (inputs, target, weight) in requests.items():
                projected = vertex.spec.project(*inputs, target, weight, **vertex.kwargs).point[:-1]
                new_state[vertex] = projected
                values[vertex] = vertex.spec.forward(*projected, **vertex.kwargs)
        else:
            for group in self.sweep_groups(members):
                for vertex, projected, output in group.project(requests):
                    new_state[vertex] = projected
                    values[vertex] = output
        self._push(new_state, members, values)
        return new_state

    def sweep_groups(self, members: Sequence[Node]) -> list[SweepGroup]:
        """The batched sweep's projection calls for a class (computed once, then cached)."""
        key = tuple(map(id, members))
        if key not in self._groups:
            operations = [
                v for v in members if isinstance(v, Operation) and not v.spec.is_output_constraint
            ]
            self._groups[key] = make_sweep_groups(operations)
        return self._groups[key]

    def _push(self, new_state: State, members: Sequence[Node], values: dict) -> None:
        member_set = set(members)
        memo: dict = {}
        consumers = dict.fromkeys(c for v in members for c in self.consumers[v])
        for consumer in consumers:
            copies = list(new_state[consumer])
            for slot, parent in enumerate(consumer.parents):
                sources = self.slot_sources[consumer][slot]
                if not sources & member_set:
                    continue
                if sources <= member_set:
                    copies[slot] = self._evaluate(parent, values, memo)
                    continue
                # the slot mixes classes (cyclic colourings only): replace just this class's entries
                zero = {s: torch.zeros_like(s.value) for s in sources - member_set}
                one = {s: torch.ones_like(s.value) for s in sources & member_set}
                mixed = self._evaluate(parent, {**zero, **values}, {})
                mask = self._evaluate(parent, {**zero, **one}, {})
                copies[slot] = mask * mixed + (1 - mask) * copies[slot]
            new_state[consumer] = tuple(copies)

    def parameter_values(self, state: State) -> dict[str, torch.Tensor]:
        """Each parameter read off as the mean of its copies in ``state``."""
        memo: dict = {}
        return {
            name: self.consensus(node, state, memo) if self.children[node] else node.value
            for name, node in self.parameters.items()
        }

    def constraint_violation(self, state: State) -> float:
        """How far ``state`` is from satisfying every constraint at once (0 at a solution).

        The root mean square, over all copies, of the gap between each copy and the value its
        source would have given the copies of that source's inputs (forward pass from the
        state); parameters and constants contribute the spread of their copies.
        """
        values = {}
        memo: dict = {}
        for vertex in self.vertices:
            if isinstance(vertex, Constant):
                values[vertex] = vertex.value
            elif isinstance(vertex, Parameter):
                if self.children[vertex]:
                    values[vertex] = self.consensus(vertex, state, memo)
            elif not vertex.spec.is_output_constraint:
                values[vertex] = vertex.spec.forward(*state[vertex], **vertex.kwargs)
        squared, count = 0.0, 0
        eval_memo: dict = {}
        for op in self.operations:
            for slot, parent in enumerate(op.parents):
                gap = state[op][slot] - self._evaluate(parent, values, eval_memo)
                squared += float((gap**2).sum())
                count += gap.numel()
            if op.spec.is_output_constraint:
                gap = state[op][0] - op.spec.project(*state[op], **op.kwargs).point[0]
                squared += float((gap**2).sum())
                count += gap.numel()
        return (squared / max(count, 1)) ** 0.5

    # --- colourings --------------------------------------------------------------------------

    def _sinks(self) -> list[Node]:
        return [v for v in self.vertices if not self.consumers[v]]

    def bipartition(self) -> list[list[Node]]:
        """Two classes with no edge inside either; the outputs' class comes first.

        Raises :class:`GraphColouringError` naming two adjacent vertices that an odd cycle forces
        into one class (a residual connection makes one).
        """
        colour: dict[Node, int] = {}
        start_order = self._sinks() + self.vertices
        for start in start_order:
            if start in colour:
                continue
            colour[start] = 0
            queue = deque([start])
            while queue:
                node = queue.popleft()
                for other in self.neighbours[node]:
                    if other not in colour:
                        colour[other] = 1 - colour[node]
                        queue.append(other)
                    elif colour[other] == colour[node]:
                        raise GraphColouringError(
                            f"the computation graph does not 2-colour: {node.describe()} and "
                            f"{other.describe()} are adjacent and an odd cycle puts them in one class "
                            "(a residual connection makes one); use CyclicProjections or "
                            "CyclicDouglasRachford, which use a colouring with more classes"
                        )
        classes = [[v for v in self.vertices if colour[v] == c] for c in (0, 1)]
        return [c for c in classes if c]

    def greedy_colouring(self) -> list[list[Node]]:
        """Classes from a greedy colouring in breadth-first order from the outputs."""
        index = {v: i for i, v in enumerate(self.vertices)}
        order: list[Node] = []
        seen: set[Node] = set()
        for start in self._sinks() + self.vertices:
            if start in seen:
                continue
            seen.add(start)
            queue = deque([start])
            while queue:
                node = queue.popleft()
                order.append(node)
                for other in sorted(self.neighbours[node], key=index.__getitem__):
                    if other not in seen:
                        seen.add(other)
                        queue.append(other)
        colour: dict[Node, int] = {}
        for node in order:
            taken = {colour[o] for o in self.neighbours[node] if o in colour}
            colour[node] = next(c for c in range(len(taken) + 1) if c not in taken)
        return [[v for v in order if colour[v] == c] for c in range(max(colour.values()) + 1)]


# --- the batched sweep -----------------------------------------------------------------------


@dataclass
class SweepGroup:
    """Operations of one class projected by one call: same spec, keyword arguments and dtype.

    ``layout`` is ``"staged"`` (one scalar solve for all members, see
    :data:`STAGED_OPERATIONS`), ``"rows"`` (rows of equal length concatenated),
    ``"elementwise"`` (entries concatenated) or ``"single"`` (one operation of another kind,
    projected as it is).
    """

    spec: OperationSpec
    kwargs: dict
    layout: Literal["staged", "rows", "elementwise", "single"]
    members: list[Operation]

    def __post_init__(self) -> None:
        self.sizes = [m.value.numel() for m in self.members]

    def _split(self, flat: torch.Tensor | None, shapes: list) -> list:
        if flat is None:
            return [None] * len(shapes)
        parts = (flat,) if len(shapes) == 1 else torch.split(flat, self.sizes)
        return [p.reshape(shape) for p, shape in zip(parts, shapes, strict=True)]

    @staticmethod
    def _cat(parts: list[torch.Tensor]) -> torch.Tensor:
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def project(self, requests: dict[Operation, tuple]):
        """Yield ``(operation, projected inputs, f(projected inputs))`` for every member.

        ``requests`` maps each member to its (input copies, output target, weight)."""
        spec, kwargs = self.spec, self.kwargs
        batch = [requests[m] for m in self.members]
        if self.layout == "single":
            ((inputs, target, weight),) = batch
            projected = spec.project(*inputs, target, weight, **kwargs).point[:-1]
            yield self.members[0], projected, spec.forward(*projected, **kwargs)
            return
        if self.layout == "staged":
            prepare, solve, finish = STAGED_OPERATIONS[spec.project]
            prepared = [prepare(*inputs, target, weight) for inputs, target, weight in batch]
            scalars = [
                self._cat([p[0][i].reshape(-1) for p in prepared])
                for i in range(len(prepared[0][0]))
            ]
            shapes = [m.shape for m in self.members]
            solved = [self._split(x, shapes) for x in solve(*scalars)]
            for i, (member, (_, vectors)) in enumerate(zip(self.members, prepared, strict=True)):
                projected = finish(*vectors, *(x[i] for x in solved)).point[:-1]
                yield member, projected, spec.forward(*projected, **kwargs)
            return

        # "rows" and "elementwise": concatenate the members' entries, project once, split back
        def flat(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(-1) if self.layout == "elementwise" else t.reshape(-1, t.shape[-1])

        inputs = [self._cat([flat(r[0][i]) for r in batch]) for i in range(len(batch[0][0]))]
        targets = [r[1].reshape(-1) for r in batch]
        weights = [r[2] for r in batch]
        if all(not isinstance(w, torch.Tensor) for w in weights) and len(set(weights)) == 1:
            weight = weights[0]
        else:  # a tensor of weights, filled where a member has a number (1·x is exact)
            weight = self._cat(
                [
                    w.reshape(-1) if isinstance(w, torch.Tensor) else torch.full_like(t, w)
                    for w, t in zip(weights, targets, strict=True)
                ]
            )
        projected = spec.project(*inputs, self._cat(targets), weight, **kwargs).point[:-1]
        if self.layout == "rows":
            sizes = self.sizes
        else:
            sizes = [m.parents[0].value.numel() for m in self.members]
        pieces = [[p] if len(sizes) == 1 else list(torch.split(p, sizes)) for p in projected]
        for i, member in enumerate(self.members):
            values = tuple(
                piece[i].reshape(parent.shape)
                for piece, parent in zip(pieces, member.parents, strict=True)
            )
            yield member, values, spec.forward(*values, **kwargs)


def _kwargs_key(kwargs: dict):
    """A hashable key for keyword arguments, or None when they cannot be compared (tensors)."""
    try:
        key = tuple(sorted(kwargs.items()))
        hash(key)
    except TypeError:
        return None
    return key


def make_sweep_groups(operations: Sequence[Operation]) -> list[SweepGroup]:
    """Group a class's graph operations into as few projection calls as possible.

    Operations are grouped by projection, keyword arguments, dtype and device (and ``max`` by
    fan-in too). Operations of other kinds, or with keyword arguments that do not compare
    (tensors), stay single.
    """
    buckets: dict[tuple, list[Operation]] = {}
    singles: list[SweepGroup] = []
    for op in operations:
        project = op.spec.project
        layout = (
            "staged"
            if project in STAGED_OPERATIONS
            else "rows"
            if project in ROW_OPERATIONS
            else "elementwise"
            if project in ELEMENTWISE_OPERATIONS
            else None
        )
        kwargs_key = _kwargs_key(op.kwargs)
        if layout is None or kwargs_key is None:
            singles.append(SweepGroup(op.spec, op.kwargs, "single", [op]))
            continue
        fan_in = op.parents[0].shape[-1] if layout == "rows" else None
        key = (project, layout, kwargs_key, op.value.dtype, op.value.device, fan_in)
        buckets.setdefault(key, []).append(op)
    groups = [SweepGroup(ops[0].spec, ops[0].kwargs, key[1], ops) for key, ops in buckets.items()]
    return groups + singles
