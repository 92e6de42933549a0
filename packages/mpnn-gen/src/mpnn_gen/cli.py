"""``mpnn-gen`` console script: wl, bounds, shatter, repro, bench."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from kernelkit.cli import add_dataclass_arguments, add_repro_and_bench, dataclass_from_args, run
from mpnn_gen import __version__

__all__ = ["BoundsConfig", "WLConfig", "main"]


@dataclass
class WLConfig:
    """Which graphs to refine and for how long."""

    dataset: Literal["atlas", "csl", "regular", "liao", "fake"] = field(
        default="atlas", metadata={"help": "offline data set"}
    )
    rounds: int = field(default=5, metadata={"help": "1-WL rounds"})
    check_collisions: bool = field(
        default=False, metadata={"help": "verify hashes against exact relabelling"}
    )


@dataclass
class BoundsConfig:
    """Train a GCN or MPGNN on Liao-style synthetic graphs and print every bound."""

    model: Literal["gcn", "mpgnn"] = field(default="gcn", metadata={"help": "architecture"})
    depth: int = field(default=2, metadata={"help": "message-passing layers"})
    width: int = field(default=32, metadata={"help": "hidden width"})
    graphs: int = field(default=100, metadata={"help": "graphs (half train, half test)"})
    nodes: int = field(default=20, metadata={"help": "nodes per graph"})
    epochs: int = field(default=150, metadata={"help": "training epochs"})
    random_labels: bool = field(default=False, metadata={"help": "train on random labels"})
    gamma: float = field(default=0.1, metadata={"help": "margin gamma"})
    delta: float = field(default=0.05, metadata={"help": "confidence delta in (0, 1)"})
    seed: int = field(default=0, metadata={"help": "seed"})


def _dataset(name: str):
    from mpnn_gen import data

    return {
        "atlas": data.atlas,
        "csl": data.csl,
        "regular": lambda: data.random_regular(20, 3, 20),
        "liao": lambda: data.liao_synthetic(100),
        "fake": lambda: data.fake_random_labels(100),
    }[name]()


def _wl(args) -> int:
    from mpnn_gen.wl import refine

    config = dataclass_from_args(WLConfig, args)
    result = refine(
        _dataset(config.dataset),
        config.rounds,
        check_collisions=config.check_collisions,
        use_features=False,
    )
    print("round\tcolours\tclasses")
    for r in range(config.rounds + 1):
        print(f"{r}\t{result.num_colours(r)}\t{result.num_classes(r)}")
    return 0


def _bounds(args) -> int:
    import mpnn_gen as M
    from mpnn_gen.data import liao_synthetic, random_label_graphs

    config = dataclass_from_args(BoundsConfig, args)
    graphs = liao_synthetic(config.graphs, nodes=config.nodes, seed=config.seed)
    train, test = graphs[: len(graphs) // 2], graphs[len(graphs) // 2 :]
    if config.random_labels:
        train = random_label_graphs(train, seed=config.seed)
    model_cls = M.GCN if config.model == "gcn" else M.MPGNN
    model = M.train_graph_classifier(
        model_cls(16, config.width, 2, config.depth),
        train,
        M.TrainConfig(epochs=config.epochs, seed=config.seed),
    )
    fns = [
        M.vc_wl,
        M.garg_rademacher,
        M.liao_gcn_pac_bayes,
        M.ju_pac_bayes,
        M.compositional_pac_bayes,
    ]
    if config.model == "mpgnn":
        fns.append(M.liao_mpgnn_pac_bayes)
    elif config.depth == 1:
        fns.append(M.aminian_mean_field)  # one GCN layer only
    rows = M.report(model, train, test, bounds=fns, delta=config.delta, gamma=config.gamma)
    print(f"gap (0-1): {rows[0]['gap_01']:.4f}   gap (margin): {rows[0]['gap_margin']:.4f}")
    for row in rows:
        print(f"{row['bound']:<26}{row['value']:>14.4g}  vacuous={row['vacuous']}")
    return 0


def _shatter(args) -> int:
    from mpnn_gen.data import tnm_trees
    from mpnn_gen.wl import count_classes

    for order in range(args.min_order, args.max_order + 1):
        trees = tnm_trees(order)
        print(f"order {order}: {len(trees)} trees, {count_classes(trees, 2)[-1]} 1-WL classes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from mpnn_gen import bench, repro

    parser = argparse.ArgumentParser(prog="mpnn-gen", description=__doc__)
    parser.add_argument("--version", action="version", version=f"mpnn-gen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    wl = sub.add_parser("wl", help="1-WL colours and classes for an offline data set")
    add_dataclass_arguments(wl, WLConfig)
    wl.set_defaults(handler=_wl)
    bounds = sub.add_parser("bounds", help="train a model and print the bound table")
    add_dataclass_arguments(bounds, BoundsConfig)
    bounds.set_defaults(handler=_bounds)
    shatter = sub.add_parser("shatter", help="tnm trees per order and their 1-WL classes")
    shatter.add_argument("--min-order", type=int, default=5)
    shatter.add_argument("--max-order", type=int, default=15)
    shatter.set_defaults(handler=_shatter)
    add_repro_and_bench(sub, package="mpnn-gen", repro_run=repro.run, bench_run=bench.run)
    return run(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
