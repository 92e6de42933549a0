"""WL refinement throughput: our vectorised refinement versus PyG's WLConv and networkx's WL
hash, on random graphs, as time ratios (ours / baseline; below 1 means we are faster)."""

from __future__ import annotations

import torch

from kernelkit.bench import Comparison, compare
from mpnn_gen.graphs import as_graph_batch
from mpnn_gen.wl import refine

__all__ = ["run"]

ROUNDS = 3


def _graphs(total_nodes: int, nodes_per_graph: int = 50, seed: int = 0):
    import networkx as nx

    count = max(1, total_nodes // nodes_per_graph)
    return [nx.gnp_random_graph(nodes_per_graph, 0.1, seed=seed + i) for i in range(count)]


def run(quick: bool = True, device: str | torch.device | None = None) -> list[Comparison]:
    """``device`` is accepted for the common interface; WL refinement runs on CPU."""
    import networkx as nx
    from torch_geometric.nn import WLConv

    sizes = (10_000,) if quick else (10_000, 100_000, 1_000_000)
    results = []
    for total in sizes:
        graphs = _graphs(total)
        flat = as_graph_batch(graphs)
        conv = WLConv()

        def pyg_wl(conv=conv, flat=flat):
            colours = torch.zeros(flat.num_nodes, dtype=torch.long)
            for _ in range(ROUNDS):
                colours = conv(colours, flat.edge_index)
            return colours

        repeats = 3 if total <= 100_000 else 1
        results.append(
            compare(
                lambda flat=flat: refine(flat, ROUNDS),
                pyg_wl,
                name=f"1-WL {ROUNDS} rounds, {total} nodes",
                label_a="mpnn_gen.refine",
                label_b="PyG WLConv",
                repeats=repeats,
                warmup=1,
                threads=1,
                meta={"nodes": flat.num_nodes, "nodes_per_second_ours": None},
            )
        )
        results.append(
            compare(
                lambda flat=flat: refine(flat, ROUNDS),
                lambda graphs=graphs: [
                    nx.weisfeiler_lehman_graph_hash(g, iterations=ROUNDS) for g in graphs
                ],
                name=f"1-WL {ROUNDS} rounds, {total} nodes",
                label_a="mpnn_gen.refine",
                label_b="networkx WL hash",
                repeats=repeats,
                warmup=1,
                threads=1,
                meta={"nodes": flat.num_nodes},
            )
        )
    for result in results:
        result.meta["nodes_per_second_ours"] = result.meta["nodes"] * ROUNDS / result.a.median_s
    return results
