"""Vectorised 1-WL colour refinement over a whole batch of graphs.

Round ``r + 1`` gives node ``v`` the colour ``H(c_v, {{c_u : u in N(v)}})``. The multiset is
hashed as a wrapping 64-bit sum of ``mix64(c_u)`` (sum-of-random-values hashing: two different
multisets collide with probability about 2^-64 per pair) and combined with ``c_v`` through
another ``mix64``. Colours are the 64-bit hash values themselves, not dense ids, so a graph gets
the same colours whether it is refined alone or inside any batch; that makes classes from
separate calls comparable. A graph's class at round ``r`` is a multiset hash of its round-``r``
node colours (its colour histogram).

``check_collisions=True`` also computes the exact sorted-tuple relabelling of every round in
plain Python and, if the hashes merged two exact classes, uses the exact colours instead.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from mpnn_gen.graphs import GraphBatch, as_graph_batch
from mpnn_gen.hashing import mix64, signed64

__all__ = ["WLResult", "count_classes", "mix64", "refine"]

_SALT_MESSAGE = signed64(0x9E3779B97F4A7C15)
_SALT_SELF = signed64(0xD6E8FEB86659FD93)
_SALT_GRAPH = signed64(0xA0761D6478BD642F)
_SALT_LABEL = signed64(0xE7037ED1A0B428DB)


def _dense(values: torch.Tensor) -> torch.Tensor:
    return torch.unique(values, return_inverse=True)[1]


def _graph_hashes(colours: torch.Tensor, batch: torch.Tensor, num_graphs: int) -> torch.Tensor:
    summed = torch.zeros(num_graphs, dtype=torch.int64).index_add_(
        0, batch, mix64(colours + _SALT_GRAPH)
    )
    return mix64(summed)


def _exact_round(old: torch.Tensor, graph: GraphBatch) -> torch.Tensor:
    """Dense ids of the exact signatures (old colour, sorted neighbour colours)."""
    old_ids = _dense(old).tolist()
    neighbours: list[list[int]] = [[] for _ in range(graph.num_nodes)]
    for u, v in graph.edge_index.t().tolist():
        neighbours[v].append(old_ids[u])
    signatures = [(old_ids[v], tuple(sorted(neighbours[v]))) for v in range(graph.num_nodes)]
    table = {sig: i for i, sig in enumerate(sorted(set(signatures)))}
    return torch.tensor([table[sig] for sig in signatures], dtype=torch.int64)


def _exact_graph_classes(colours: torch.Tensor, graph: GraphBatch) -> int:
    ids = _dense(colours).tolist()
    per_graph: list[list[int]] = [[] for _ in range(graph.num_graphs)]
    for node, g in enumerate(graph.batch.tolist()):
        per_graph[g].append(ids[node])
    return len({tuple(sorted(c)) for c in per_graph})


@dataclass(frozen=True)
class WLResult:
    """Colours of every round of a refinement.

    ``node_colours[r]`` are the int64 colour hashes after ``r`` rounds (round 0: the labels);
    ``graph_hashes[r]`` one hash per graph of its round-``r`` colour histogram. A refinement
    stops computing once its colouring is stable (a round that splits no colour class): the lists
    then end at that round, ``stable_round``, and every later round up to ``rounds`` has the same
    partition, so the accessors below answer for it with the stable round's colours.
    """

    node_colours: list[torch.Tensor]
    graph_hashes: list[torch.Tensor]
    batch: torch.Tensor
    num_graphs: int
    collisions_resolved: int = 0
    requested_rounds: int | None = None

    @property
    def rounds(self) -> int:
        """The number of rounds asked for (queries are valid for rounds 0..rounds)."""
        computed = len(self.node_colours) - 1
        return computed if self.requested_rounds is None else self.requested_rounds

    @property
    def stable_round(self) -> int | None:
        """The round from which the colouring no longer changes, if it was reached."""
        computed = len(self.node_colours) - 1
        return computed if computed < self.rounds else None

    def _check_round(self, round: int) -> int:
        if isinstance(round, bool) or not isinstance(round, int) or not 0 <= round <= self.rounds:
            raise ValueError(f"round must be an int in [0, {self.rounds}], got {round!r}")
        return min(round, len(self.node_colours) - 1)

    def num_colours(self, round: int) -> int:
        """Distinct node colours over the whole batch after ``round`` rounds."""
        return int(torch.unique(self.node_colours[self._check_round(round)]).numel())

    def classes(self, round: int) -> torch.Tensor:
        """Dense class id per graph: equal ids iff the colour histograms are equal."""
        return _dense(self.graph_hashes[self._check_round(round)])

    def num_classes(self, round: int) -> int:
        """How many graphs 1-WL tells apart after ``round`` rounds (number of classes)."""
        return int(torch.unique(self.graph_hashes[self._check_round(round)]).numel())

    def histogram(self, round: int) -> torch.Tensor:
        """``(num_graphs, num_colours)`` counts; colour columns are ordered by hash value."""
        colours = _dense(self.node_colours[self._check_round(round)])
        counts = torch.zeros(self.num_graphs, int(colours.max()) + 1, dtype=torch.int64)
        counts.index_put_((self.batch, colours), torch.ones_like(colours), accumulate=True)
        return counts


def refine(
    graphs,
    rounds: int,
    *,
    use_features: bool = True,
    check_collisions: bool = False,
    seed: int = 0,
) -> WLResult:
    """Run ``rounds`` rounds of 1-WL on all ``graphs`` jointly (see :func:`as_graph_batch` for
    accepted inputs). ``seed`` salts every hash; results for different seeds induce the same
    partitions unless a hash collision occurred.

    The refinement stops early once a round splits no colour class (then no later round does),
    so ``rounds`` may be as large as one likes; the result answers for every round up to it
    (``WLResult.stable_round``). Colour hashes of separate calls are comparable round by round
    up to both calls' stable rounds; to compare colours beyond them (e.g. test against training
    graphs), refine the graphs together in one call."""
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    graph = as_graph_batch(graphs, use_features=use_features)
    salt = signed64(int(mix64(torch.tensor([seed])).item()))
    source, target = graph.edge_index
    colours = mix64(graph.labels + (_SALT_LABEL ^ salt))
    node_colours, graph_hashes = (
        [colours],
        [_graph_hashes(colours ^ salt, graph.batch, graph.num_graphs)],
    )
    resolved = 0
    classes = torch.unique(colours).numel()
    for _ in range(rounds):
        messages = mix64(colours + (_SALT_MESSAGE ^ salt))
        summed = torch.zeros_like(colours).index_add_(0, target, messages[source])
        new = mix64(mix64(colours + (_SALT_SELF ^ salt)) + mix64(summed))
        if check_collisions:
            exact = _exact_round(colours, graph)
            if torch.unique(exact).numel() > torch.unique(new).numel():
                resolved += 1
                warnings.warn("1-WL hash collision detected; using exact relabelling", stacklevel=2)
                new = mix64(exact + (_SALT_SELF ^ salt))
        colours = new
        hashes = _graph_hashes(colours ^ salt, graph.batch, graph.num_graphs)
        if check_collisions and _exact_graph_classes(colours, graph) > torch.unique(hashes).numel():
            raise RuntimeError("graph-level 1-WL hash collision; rerun with another seed")
        split = torch.unique(colours).numel()
        if split == classes:
            # No class split: this round's partition is the previous one's, and so is every
            # later round's. Keep the previous round as the stable one and stop.
            break
        classes = split
        node_colours.append(colours)
        graph_hashes.append(hashes)
    return WLResult(node_colours, graph_hashes, graph.batch, graph.num_graphs, resolved, rounds)


def count_classes(graphs, rounds: int, **kwargs) -> list[int]:
    """Number of 1-WL classes among ``graphs`` after 0, 1, ..., ``rounds`` rounds."""
    result = refine(graphs, rounds, **kwargs)
    return [result.num_classes(r) for r in range(rounds + 1)]
