"""Projection algorithms: the optimisers that replace gradient descent.

Each ``update(fn, params)`` call traces ``fn`` (a function of a dict of parameter nodes that
returns the output node or nodes) on the current mini-batch, initialises every copy from the
forward pass, runs ``steps_per_update`` iterations, and reads the new parameters off the final
iterate. Nothing carries over between calls except the parameters.

With the colour classes A (holding the outputs) and B, and R = 2P − I:

* alternating projections      x ← P_B P_A x
* alternating reflections      x ← R_B R_A x
* Douglas–Rachford (default)   x ← (1 − λ) x + λ R_B R_A x, λ = 0.5
* difference map               x ← x + β [P_A(f_B x) − P_B(f_A x)], f_A = (1 − 1/β) P_A + I/β,
                               f_B = (1 + 1/β) P_B − I/β (for β = 1: x + P_A(2 P_B x − x) − P_B x)

and, for graphs that do not 2-colour, over classes C_1..C_m of a greedy colouring:

* cyclic projections           x ← P_m … P_1 x
* cyclic Douglas–Rachford      x ← D_{m,1} … D_{2,3} D_{1,2} x, D_{i,j} = (1 − λ) I + λ R_j R_i

The parameters come from the *shadow* P_A(x) of the final iterate (the point the theory says
converges for DR and the difference map; for projections it is the last projection onto A),
each the mean of its copies there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch

from pjax_torch.api import parameter
from pjax_torch.graph import ConsensusWeight, Graph, Node, State, Sweep

__all__ = [
    "ALGORITHMS",
    "AlternatingProjections",
    "AlternatingReflections",
    "CyclicDouglasRachford",
    "CyclicProjections",
    "DifferenceMap",
    "DouglasRachford",
    "Optimizer",
    "make_optimizer",
]

Projector = Callable[[State], State]


def _combine(a: State, b: State, alpha: float, beta: float) -> State:
    """alpha·a + beta·b, entry by entry."""
    return {k: tuple(alpha * x + beta * y for x, y in zip(a[k], b[k], strict=True)) for k in a}


def _reflect(projector: Projector, state: State) -> State:
    return _combine(projector(state), state, 2.0, -1.0)


def _mean_squared_change(a: State, b: State) -> float:
    changes = [float(((x - y) ** 2).mean()) for k in a for x, y in zip(a[k], b[k], strict=True)]
    return sum(changes) / max(len(changes), 1)


class Optimizer:
    """Base class: tracing, state, the loop and the parameter read-out.

    ``steps_per_update`` iterations run per mini-batch (50 in the paper's code).
    ``consensus_weight`` is ``"one"`` (the reference code) or ``"count"`` (each node's output
    term weighted by its number of copies: the exact projection in the space of copies).
    ``sweep`` is ``"batched"`` (default: one projection call per group of like operations in a
    colour class) or ``"per_node"`` (one call per operation, the readable reference); both give
    the same iterates up to rounding.
    """

    bipartite = True

    def __init__(
        self,
        steps_per_update: int = 50,
        consensus_weight: ConsensusWeight = "one",
        sweep: Sweep = "batched",
    ):
        if (
            isinstance(steps_per_update, bool)
            or not isinstance(steps_per_update, int)
            or steps_per_update < 1
        ):
            raise ValueError(f"steps_per_update must be an int >= 1, got {steps_per_update!r}")
        if consensus_weight not in ("one", "count"):
            raise ValueError(f"consensus_weight must be 'one' or 'count', got {consensus_weight!r}")
        if sweep not in ("batched", "per_node"):
            raise ValueError(f"sweep must be 'batched' or 'per_node', got {sweep!r}")
        self.steps_per_update = steps_per_update
        self.consensus_weight = consensus_weight
        self.sweep = sweep
        self.last_residuals: list[float] = []
        self.last_graph: Graph | None = None

    def classes(self, graph: Graph) -> list[list[Node]]:
        return graph.bipartition() if self.bipartite else graph.greedy_colouring()

    def step(self, state: State, projectors: Sequence[Projector]) -> State:
        raise NotImplementedError

    def update(
        self,
        fn: Callable[[dict[str, Node]], Node | Sequence[Node]],
        params: Mapping[str, torch.Tensor],
        steps_per_update: int | None = None,
    ) -> tuple[dict[str, torch.Tensor], float]:
        """One mini-batch: returns the new parameters and the last step's fixed-point residual
        (mean squared change of the copies); the whole curve is in ``last_residuals``."""
        if not isinstance(params, Mapping) or not params:
            raise TypeError("params must be a non-empty mapping of name to tensor")
        steps = self.steps_per_update if steps_per_update is None else steps_per_update
        nodes = {name: parameter(value.detach(), name) for name, value in params.items()}
        graph = Graph(fn(nodes), consensus_weight=self.consensus_weight, sweep=self.sweep)
        unused = sorted(set(params) - set(graph.parameters))
        if unused:
            raise ValueError(f"parameters {unused} do not appear in the traced graph")
        classes = self.classes(graph)
        projectors = [lambda s, c=c: graph.project_class(s, c) for c in classes]
        state = graph.initial_state()
        self.last_residuals = []
        with torch.no_grad():
            for _ in range(steps):
                new_state = self.step(state, projectors)
                self.last_residuals.append(_mean_squared_change(state, new_state))
                state = new_state
            shadow = projectors[0](state)
            new_params = graph.parameter_values(shadow)
        self.last_graph = graph
        self.last_state = shadow
        return {
            name: new_params[name].to(params[name].dtype) for name in params
        }, self.last_residuals[-1]


class AlternatingProjections(Optimizer):
    def step(self, state, projectors):
        project_a, project_b = projectors
        return project_b(project_a(state))


class AlternatingReflections(Optimizer):
    def step(self, state, projectors):
        project_a, project_b = projectors
        return _reflect(project_b, _reflect(project_a, state))


class _Relaxed(Optimizer):
    """An optimiser with a relaxation λ ∈ (0, 1] (0.5 by default, as in the paper's code)."""

    def __init__(
        self,
        steps_per_update: int = 50,
        consensus_weight: ConsensusWeight = "one",
        relaxation: float = 0.5,
        sweep: Sweep = "batched",
    ):
        super().__init__(steps_per_update, consensus_weight, sweep)
        if not 0 < relaxation <= 1:
            raise ValueError(f"relaxation must be in (0, 1], got {relaxation!r}")
        self.relaxation = relaxation


class DouglasRachford(_Relaxed):
    """Douglas–Rachford with relaxation λ ∈ (0, 1] (0.5 by default, as in the paper's code)."""

    def step(self, state, projectors):
        project_a, project_b = projectors
        reflected = _reflect(project_b, _reflect(project_a, state))
        return _combine(state, reflected, 1 - self.relaxation, self.relaxation)


class DifferenceMap(Optimizer):
    """Elser's difference map with parameter β ≠ 0 (1 by default)."""

    def __init__(
        self,
        steps_per_update: int = 50,
        consensus_weight: ConsensusWeight = "one",
        beta: float = 1.0,
        sweep: Sweep = "batched",
    ):
        super().__init__(steps_per_update, consensus_weight, sweep)
        if beta == 0:
            raise ValueError("beta must be non-zero, got 0")
        self.beta = beta

    def step(self, state, projectors):
        project_a, project_b = projectors
        beta = self.beta
        p_a, p_b = project_a(state), project_b(state)
        f_a = _combine(p_a, state, 1 - 1 / beta, 1 / beta)
        f_b = _combine(p_b, state, 1 + 1 / beta, -1 / beta)
        difference = _combine(project_a(f_b), project_b(f_a), 1.0, -1.0)
        return _combine(state, difference, 1.0, beta)


class CyclicProjections(Optimizer):
    bipartite = False

    def step(self, state, projectors):
        for project in projectors:
            state = project(state)
        return state


class CyclicDouglasRachford(_Relaxed):
    bipartite = False

    def step(self, state, projectors):
        count = len(projectors)
        for i in range(count):
            first, second = projectors[i], projectors[(i + 1) % count]
            reflected = _reflect(second, _reflect(first, state))
            state = _combine(state, reflected, 1 - self.relaxation, self.relaxation)
        return state


ALGORITHMS: dict[str, type[Optimizer]] = {
    "ap": AlternatingProjections,
    "ar": AlternatingReflections,
    "dr": DouglasRachford,
    "dm": DifferenceMap,
    "cyclic-ap": CyclicProjections,
    "cyclic-dr": CyclicDouglasRachford,
}


def make_optimizer(name: str, **kwargs) -> Optimizer:
    """An optimiser by its short name (``ap``, ``ar``, ``dr``, ``dm``, ``cyclic-ap``, ``cyclic-dr``)."""
    if name not in ALGORITHMS:
        raise ValueError(f"name must be one of the algorithms {sorted(ALGORITHMS)}, got {name!r}")
    return ALGORITHMS[name](**kwargs)
