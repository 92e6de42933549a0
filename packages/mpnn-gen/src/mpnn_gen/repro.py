"""Quick reproduction: E1 (WL classes on the atlas, shatter test), E2 (bounds vs gap), E3
(colour count and gap vs depth)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from kernelkit.repro import Report, new_figure
from kernelkit.utils import progress, seed_everything, torch_threads
from mpnn_gen import bounds as B
from mpnn_gen.data import atlas, er_densities, fake_random_labels, random_label_graphs, tnm_trees
from mpnn_gen.graphs import to_pyg
from mpnn_gen.measure import measure_gap, rank_correlations
from mpnn_gen.models import GCN, MPGNN, TrainConfig, train_graph_classifier
from mpnn_gen.wl import count_classes, refine

__all__ = ["run"]

GAMMA = 0.1
DELTA = 0.05


def _e1(report: Report, quick: bool) -> None:
    counts = count_classes(atlas(), 5)
    for rounds, classes in enumerate(counts):
        report.add_metrics(experiment="E1 atlas", rounds=rounds, wl_classes=classes)
    fig, ax = new_figure()
    ax.plot(range(len(counts)), counts, marker="o")
    ax.set_xlabel("1-WL rounds L")
    ax.set_ylabel("classes among 1253 atlas graphs")
    report.save_figure(fig, "e1_atlas_classes")
    report.add_claim(
        "E1: 1-WL separates most atlas graphs (<= 7 nodes) after 3 rounds; classes = VC ceiling m_{7,L}",
        counts[3] / 1253,
        0.9,
        details=f"classes per round {counts}; exact count, threshold 0.9 from the research note",
        source="paper",
        reference="Morris et al. ICML 2023 (VC dimension = 1-WL classes)",
    )
    orders = range(8, 21) if quick else range(8, 41)
    separated = min(count_classes(tnm_trees(o), 2)[-1] / len(tnm_trees(o)) for o in orders)
    report.add_claim(
        "E1: 1-WL distinguishes all floor((o-3)/2)+1 tnm trees of order o (Morris et al.)",
        separated,
        1.0,
        details=f"min fraction over orders {orders.start}..{orders.stop - 1}; exact count",
        source="paper",
        reference="Morris et al. ICML 2023 (tnm trees)",
    )
    trees = tnm_trees(16 if quick else 30)
    labellings, restarts, epochs = (4, 3, 1000) if quick else (20, 5, 3000)
    generator = torch.Generator().manual_seed(0)
    fitted, tries = [], []
    for _ in progress(range(labellings), desc="shatter"):
        labels = torch.randint(2, (len(trees),), generator=generator).tolist()
        data = [to_pyg(t, y=y) for t, y in zip(trees, labels, strict=True)]
        for restart in range(restarts):
            torch.manual_seed(restart)
            model = MPGNN(1, 32, 2, steps=2, pool="sum")
            config = TrainConfig(epochs=epochs, lr=0.01, seed=restart, stop_when_fit=True)
            train_graph_classifier(model, data, config)
            if measure_gap(model, data, data).train_error == 0.0:
                tries.append(restart + 1)
                break
        else:
            tries.append(None)
        fitted.append(0.0 if tries[-1] is None else 1.0)
    report.add_claim(
        "E1 shatter test: a 2-layer MPNN of width 32 fits every random labelling of the tnm trees",
        fitted,
        1.0,
        details=(
            f"one sample per random labelling (1 = fitted): {len(trees)} trees (constant "
            f"features), {labellings} labellings, shared-weight GraphConv MPNN with sum pooling, "
            f"<= {epochs} Adam steps (stop at 0 train error), <= {restarts} restarts; restarts "
            f"used per labelling {tries}. Threshold 1: shattering means every labelling fits"
        ),
        source="paper",
        reference="Morris et al. ICML 2023 (wide MPNNs reach the 1-WL VC ceiling)",
    )


def _e2(report: Report, quick: bool) -> None:
    # ER graphs whose class is the density, one-hot degree features: learnable by a mean-pooling
    # GCN (test error well below chance), so the gap varies with train size and labels.
    graphs = er_densities(200 if quick else 800, nodes=16 if quick else 30, seed=0)
    pool, test = graphs[: len(graphs) // 2], graphs[len(graphs) // 2 :]
    sizes, depths, widths = (
        ((16, 64), (1, 3), (16, 64)) if quick else ((25, 100, 400), (1, 2, 4), (16, 64, 256))
    )
    # Random labels two ways: the same ER graphs with shuffled labels (only the labels change,
    # so bound ratios random/true isolate the labels), and PyG FakeDataset graphs (noise
    # features, labels independent of everything) with their own test set.
    nodes = 16 if quick else 30
    fake = fake_random_labels(2 * max(sizes), nodes=nodes, degree=nodes / 4, seed=3)
    sets, tests = {}, {}
    for m in sizes:
        sets[("true labels", m)] = pool[:m]
        sets[("random labels", m)] = random_label_graphs(pool[:m], seed=1)
        sets[("FakeDataset", m)] = fake[:m]
        tests.update({("true labels", m): test, ("random labels", m): test})
        tests[("FakeDataset", m)] = fake[max(sizes) :]
    bound_fns = [
        B.liao_gcn_pac_bayes,
        B.ju_pac_bayes,
        B.compositional_pac_bayes,
        B.garg_rademacher,
    ]
    seeds = range(3 if quick else 5)
    per_seed: list[list[dict]] = []
    runs = [(seed, key, d, w) for seed in seeds for key in sets for d in depths for w in widths]
    for seed, (name, m), depth, width in progress(runs, desc="E2"):
        if seed == len(per_seed):
            per_seed.append([])
        train, test = sets[(name, m)], tests[(name, m)]
        seed_everything(1000 * seed + depth * 100 + width)
        model = train_graph_classifier(
            GCN(16, width, 2, depth), train, TrainConfig(epochs=150 if quick else 300)
        )
        gap = measure_gap(model, train, test, gamma=GAMMA)
        values = {fn.__name__: fn(model, train, delta=DELTA, gamma=GAMMA).value for fn in bound_fns}
        values["vc_wl"] = B.vc_wl(model, train, delta=DELTA, use_features=False).value
        # Aminian et al. cover one GCN layer only: NaN (and left out of tau) at other depths.
        values["aminian_mean_field"] = (
            B.aminian_mean_field(model, train, delta=DELTA).value if depth == 1 else math.nan
        )
        report.add_metrics(
            experiment="E2",
            seed=seed,
            data=name,
            m=m,
            depth=depth,
            width=width,
            train_err=gap.train_error,
            test_err=gap.test_error,
            gap_01=gap.gap,
            gap_margin=gap.margin_gap,
            **values,
        )
        per_seed[seed] += [
            {"bound": k, "value": v, "gap_01": gap.gap, "data": name}
            for k, v in values.items()
            if not math.isnan(v)
        ]
    taus = [rank_correlations(rows) for rows in per_seed]
    for name in taus[0]:
        values = [tau[name] for tau in taus]
        report.add_metrics(
            experiment="E2 Kendall tau vs 0-1 gap",
            bound=name,
            tau_mean=sum(values) / len(values),
            tau_per_seed=", ".join(f"{v:.3f}" for v in values),
        )

    def of(rows, bound, data=None):
        return [r["value"] for r in rows if r["bound"] == bound and data in (None, r["data"])]

    def median(values):
        return sorted(values)[len(values) // 2]

    sweep = (
        f"{len(runs) // len(seeds)} runs per seed (train size x depth x width x {{true labels, "
        f"random labels, FakeDataset}}), training seeds {list(seeds)}"
    )
    report.add_claim(
        "E2: the Liao GCN PAC-Bayes bound is numerically vacuous (> 1) on every run",
        [min(of(rows, "liao_gcn_pac_bayes")) for rows in per_seed],
        1.0,
        ">",
        details=f"smallest bound value per seed over {sweep}",
        source="package",
    )
    report.add_claim(
        "E2: the Liao GCN bound rank-correlates with the measured 0-1 gap across the sweep",
        [tau["liao_gcn_pac_bayes"] for tau in taus],
        0.0,
        ">",
        details=f"Kendall tau per seed over {sweep}; threshold 0: any positive association",
        source="package",
    )
    report.add_claim(
        "E2: Ju's diffusion-norm bound is below Liao's (||P_G||_2 = 1 < d for GCN)",
        [
            max(
                a / b
                for a, b in zip(
                    of(rows, "ju_pac_bayes"), of(rows, "liao_gcn_pac_bayes"), strict=True
                )
            )
            for rows in per_seed
        ],
        1.0,
        "<",
        details=f"largest Ju / Liao ratio per seed over {sweep}",
        source="paper",
        reference="Ju et al. AISTATS 2023 (abstract)",
    )
    report.add_claim(
        "E2: random labels raise the norm-based bound (median ratio random / true labels)",
        [
            median(of(rows, "liao_gcn_pac_bayes", "random labels"))
            / median(of(rows, "liao_gcn_pac_bayes", "true labels"))
            for rows in per_seed
        ],
        1.0,
        ">",
        details="per seed; same ER graphs, labels shuffled (FakeDataset runs not in this ratio); "
        "threshold 1: a norm-based bound must grow when the labels carry no signal",
        source="package",
    )
    fig, ax = new_figure()
    rows = [row for seed_rows in per_seed for row in seed_rows]
    for name in taus[0]:
        pts = [(r["gap_01"], r["value"]) for r in rows if r["bound"] == name]
        ax.scatter(*zip(*pts, strict=True), label=name, s=14)
    ax.set_yscale("log")
    ax.set_xlabel("measured 0-1 gap")
    ax.set_ylabel("bound value")
    ax.legend(fontsize=7)
    report.save_figure(fig, "e2_bounds_vs_gap")


def _e3(report: Report, quick: bool) -> None:
    from scipy.stats import kendalltau

    graphs = er_densities(200 if quick else 800, nodes=16 if quick else 30, seed=2)
    m = 32 if quick else 100
    train, test = graphs[:m], graphs[len(graphs) // 2 :]
    result = refine(train, 5, use_features=False)
    # Three seeds over depths 1-4 left the tau interval across 0 in a first run (taus are coarse
    # over four depths), and a run costs about a second: five seeds over depths 1-5 can decide.
    depths = list(range(1, 6 if quick else 7))
    seeds = range(5 if quick else 8)
    colours = [result.num_colours(min(depth, 5)) for depth in depths]
    gaps = {seed: [] for seed in seeds}
    for depth in progress(depths, desc="E3"):
        for seed in seeds:
            seed_everything(100 * seed + depth)
            model = train_graph_classifier(GCN(16, 32, 2, depth), train, TrainConfig(epochs=150))
            gaps[seed].append(measure_gap(model, train, test).gap)
    mean_gaps = [sum(gaps[s][i] for s in seeds) / len(seeds) for i in range(len(depths))]
    for i, depth in enumerate(depths):
        report.add_metrics(
            experiment="E3", depth=depth, wl_colours=colours[i], gap_01_mean=mean_gaps[i]
        )
    fig, ax = new_figure()
    for seed in seeds:
        ax.plot(depths, gaps[seed], color="C0", alpha=0.3)
    ax.plot(depths, mean_gaps, marker="o", color="C0")
    ax.set_xlabel("GCN depth = 1-WL rounds")
    ax.set_ylabel("0-1 gap (seeds and mean)", color="C0")
    twin = ax.twinx()
    twin.plot(depths, colours, marker="s", color="C1")
    twin.set_ylabel("1-WL colours on the training graphs", color="C1")
    report.save_figure(fig, "e3_gap_and_colours_vs_depth")

    report.add_claim(
        "E3: the 1-WL colour count grows with depth (Morris et al. Q2)",
        float(kendalltau(depths, colours).statistic),
        0.0,
        ">",
        details=f"exact colour counts {colours} on the {m} training graphs",
        source="paper",
        reference="Morris et al. Q2 (survey experiment: layers vs gap)",
    )
    taus = [float(kendalltau(depths, gaps[seed]).statistic) for seed in seeds]
    report.add_claim(
        "E3: the 0-1 gap grows with depth (Morris et al. Q2)",
        taus,
        0.0,
        ">",
        details=f"Kendall tau of depth vs gap per training seed, m = {m}: gaps per seed "
        + "; ".join(f"{[round(g, 3) for g in gaps[s]]}" for s in seeds)
        + "; threshold 0: any increase with depth",
        source="paper",
        reference="Morris et al. Q2 (survey experiment: layers vs gap)",
    )


def run(out_dir: str | os.PathLike, quick: bool = True) -> Report:
    """Run E1-E3 and write the report into ``out_dir``."""
    report = Report("mpnn-gen", Path(out_dir), quick=quick)
    with torch_threads(1):
        _e1(report, quick)
        _e2(report, quick)
        _e3(report, quick)
    report.notes.append(
        f"Margin gamma = {GAMMA}, delta = {DELTA}. Bounds are gap terms with O(.) constants set "
        "to 1; vacuous values are expected and reported as measured."
    )
    report.notes.append(
        "Provenance of each formula: mpnn_gen.bounds.PROVENANCE (garg_rademacher: constants "
        "reconstructed, dependences checked against Liao et al. Table 1; aminian_mean_field: "
        "from the authors' code). FakeDataset runs: PyG FakeDataset graphs with seeded random "
        "labels and their own random-label test set, so test error is chance up to the test "
        "set's label balance. "
        "aminian_mean_field bounds the logistic-loss gap of a one-layer GCN at alpha = 100 (their "
        "code's default); it is evaluated on the depth-1 runs only (NaN elsewhere), so its tau "
        "is over those runs, and our models are not trained in their mean-field regime."
    )
    report.write()
    return report
