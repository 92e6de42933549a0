"""Generalisation bounds for message-passing GNNs, each returned as a :class:`Bound` record.

Every function takes a trained model, its training graphs and the confidence ``delta`` (and the
margin ``gamma`` where the bound is on a margin loss) and returns the value of the *gap term*
(test risk minus the empirical risk the bound is stated for), the inputs it used, the
assumptions and the source. Constants hidden in an ``O(.)`` are set to 1 and said so.

Shared conventions (see the README's bound table):

- ``m``: number of training graphs (nodes for the node-level bounds); ``delta`` in (0, 1).
- ``d``: maximum node degree **plus one** (Liao et al. state graphs of maximum degree d - 1).
- ``B``: largest Euclidean norm of a node feature vector in the training graphs.
- ``l``: number of weight matrices (message-passing layers plus readout); ``h``: largest width.
- ``s_i = ||W_i||_2`` (spectral), ``F_i = ||W_i||_F``; ``||P_G||_2`` by power iteration on the
  operator each layer applies (:mod:`mpnn_gen.norms`), maximised over the training graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from kernelkit.validation import (
    check_finite,
    check_floating,
    check_index_range,
    check_int_in_range,
    check_ndim,
    check_real_in_range,
)
from mpnn_gen.graphs import as_graph_batch, check_pyg_graph, check_shared_feature_shape
from mpnn_gen.norms import extract_layers, operator_norm

__all__ = [
    "PROVENANCE",
    "Bound",
    "aminian_mean_field",
    "compositional_pac_bayes",
    "garg_rademacher",
    "ju_pac_bayes",
    "liao_gcn_pac_bayes",
    "liao_mpgnn_pac_bayes",
    "stability_verma_zhang",
    "transductive_rademacher_sgc",
    "unseen_colour_fraction",
    "vc_wl",
]

EL_YANIV_C0 = math.sqrt(32 * math.log(4 * math.e) / 3)

# How far each formula was checked against its source (README, "Provenance"). Keyed by
# ``Bound.name``; "verified" means the formula was compared term by term with a theorem text.
PROVENANCE = {
    "vc_wl": (
        "partly verified: the VC bound is Mohri, Rostamizadeh & Talwalkar, Foundations of ML, "
        "Cor. 3.19 (standard textbook form; text not fetched); 'VC <= number of 1-WL classes' "
        "is Morris et al. ICML'23 as stated in their abstract (theorem hypotheses not read)"
    ),
    "garg_rademacher": (
        "reconstructed: constants 4, 24, sqrt(3), the form of Q and Lemma 1's factors 2 and 3 "
        "are from memory of Garg et al. ICML'20 Lemma 1 + Prop. 7 (paper body not readable with "
        "our tools); the dependence on d, h and the weights matches the restatement in Liao et "
        "al. ICLR'21 Table 1"
    ),
    "liao_gcn_pac_bayes": (
        "verified against Liao, Urtasun & Zemel ICLR'21 Thm 3.2 (submission text in a public "
        "repository): every factor and exponent; O(.) constant set to 1"
    ),
    "ju_pac_bayes": (
        "partly verified: only the replacement of d^(l-1) by diffusion norms is Ju et al. "
        "AISTATS'23 (abstract); the other factors are Liao Thm 3.2; Ju's own theorem not read"
    ),
    "liao_mpgnn_pac_bayes": (
        "verified against Ju et al.'s restatement of Liao Thm 3.4 (research note [V]); differs "
        "from Liao Thm 3.4 as printed (3 matrices W_1, W_2, W_l; zeta = min of 3 spectral "
        "norms; sum of 3 squared Frobenius norms; log(lh); no explicit 42^2)"
    ),
    "compositional_pac_bayes": (
        "verified against Brilliantov, Souza & Garg NeurIPS'24 Lemma 2 (eq. 18, appendix text "
        "in a public repository); GNN constants C_1 = B d^((n-1)/2) Lip, eta = 1/(6n) from "
        "their bounds.py (research note [V], not re-read)"
    ),
    "aminian_mean_field": (
        "reconstructed from the authors' code (SherylHYX/GNN_MF_GE models.py); theorems not "
        "readable; their ICML poster gives Thm 1 only as alpha C/n (C unnamed) and the "
        "Rademacher version's degree term as (d_max/d_min)^(3/4), the code (d_max+1)^(3/4): "
        "unresolved"
    ),
    "stability_verma_zhang": (
        "reconstructed, not re-checked: beta from Hardt et al.'s convex-SGD argument (our "
        "reading of Verma & Zhang KDD'19, theorem not read); 2 beta + (4 m beta + M) "
        "sqrt(ln(1/delta)/(2m)) is Bousquet & Elisseeff's form (from memory)"
    ),
    "transductive_rademacher_sgc": (
        "not re-checked: El-Yaniv & Pechyony JAIR'09 constants (c0, S, Q) from memory "
        "(research note [M]); searches found citations only"
    ),
    "unseen_wl_colours": (
        "diagnostic, not a bound: our definition after Yehudai et al. ICML'21 (d-patterns)"
    ),
}


@dataclass(frozen=True)
class Bound:
    """One bound evaluated on one model and data set.

    ``value`` bounds the generalisation gap (or, for diagnostics, is the diagnostic); ``inputs``
    are the numbers it was computed from; ``assumptions`` what must hold for it to be a bound.
    """

    name: str
    value: float
    inputs: dict[str, float]
    assumptions: tuple[str, ...]
    source: str
    kind: str = "gap bound"
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def provenance(self) -> str:
        """How far this family's formula was checked against its source (``PROVENANCE``)."""
        return PROVENANCE.get(self.name, "not recorded (bound built outside mpnn_gen.bounds)")

    @property
    def vacuous(self) -> bool:
        """True when the bound says nothing about a loss in [0, 1]."""
        return self.kind == "gap bound" and self.value >= 1.0


def _check_delta(delta: float) -> float:
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 < delta < 1:
        raise ValueError(f"delta must be a number in (0, 1), got {delta!r}")
    return float(delta)


def _check_gamma(gamma: float) -> float:
    if isinstance(gamma, bool) or not isinstance(gamma, int | float) or not 0 < gamma < math.inf:
        raise ValueError(f"gamma must be a finite number > 0, got {gamma!r}")
    return float(gamma)


def _graph_list(
    graphs, name: str = "train", *, need_features: bool = True, need_labels: bool = False
) -> list:
    """``graphs`` as a checked list of PyG graphs (see :func:`check_pyg_graph`); with
    ``need_labels`` each must carry one integer class id ``y >= 0`` (the upper limit, the number
    of logits, is checked where the model runs)."""
    from torch_geometric.data import Batch, Data

    if isinstance(graphs, Batch):
        graphs = graphs.to_data_list()
    elif isinstance(graphs, Data):
        graphs = [graphs]
    if graphs is None or isinstance(graphs, str | bytes):
        raise TypeError(f"{name} must be PyG graphs, got {type(graphs).__name__}")
    graphs = list(graphs)
    if not graphs:
        raise ValueError(f"{name} must contain at least one graph, got an empty dataset")
    for index, graph in enumerate(graphs):
        check_pyg_graph(f"{name}[{index}]", graph, need_features=need_features)
        if need_labels:
            label = getattr(graph, "y", None)
            check_index_range(f"{name}[{index}].y", label, 2**62)
            if label.shape != (1,):
                raise ValueError(
                    f"{name}[{index}].y must hold one class id, shape (1,), got {tuple(label.shape)}"
                )
    check_shared_feature_shape(name, graphs)
    return graphs


@dataclass(frozen=True)
class _Stats:
    m: int
    max_feature_norm: float
    max_degree_plus_one: int
    spectral: list[float]
    frobenius: list[float]
    width: int
    propagation_norms: list[float]


def _stats(model, graphs) -> _Stats:
    graphs = _graph_list(graphs)
    layers = extract_layers(model)
    flat = as_graph_batch(graphs, use_features=False)
    degree = torch.bincount(flat.edge_index[1], minlength=flat.num_nodes)
    features = torch.cat([g.x for g in graphs]).double()
    norms = [
        float(operator_norm(layer.operator, flat, gin_eps=layer.gin_eps).max())
        for layer in layers
        if layer.operator != "identity"
    ]
    return _Stats(
        m=len(graphs),
        max_feature_norm=float(features.norm(dim=1).max()),
        max_degree_plus_one=int(degree.max()) + 1,
        spectral=[layer.spectral for layer in layers],
        frobenius=[layer.frobenius for layer in layers],
        width=max(layer.width for layer in layers),
        propagation_norms=norms,
    )


def _norm_inputs(stats: _Stats) -> dict[str, float]:
    inputs = {
        "m": stats.m,
        "B": stats.max_feature_norm,
        "d": stats.max_degree_plus_one,
        "l": len(stats.spectral),
        "h": stats.width,
        "message_passing_layers": len(stats.propagation_norms),
    }
    for i, (s, f) in enumerate(zip(stats.spectral, stats.frobenius, strict=True)):
        inputs[f"spectral_{i}"] = s
        inputs[f"frobenius_{i}"] = f
    for i, p in enumerate(stats.propagation_norms):
        inputs[f"operator_norm_{i}"] = p
    return inputs


def _pac_bayes_gcn_form(stats: _Stats, structure_factor: float, delta: float, gamma: float):
    depth, h, m = len(stats.spectral), stats.width, stats.m
    product = math.prod(s**2 for s in stats.spectral)
    ratio_sum = sum(f**2 / s**2 for f, s in zip(stats.frobenius, stats.spectral, strict=True))
    complexity = (
        stats.max_feature_norm**2
        * structure_factor
        * depth**2
        * h
        * math.log(depth * h)
        * product
        * ratio_sum
    )
    return math.sqrt((complexity + math.log(m * depth / delta)) / (gamma**2 * m))


def liao_gcn_pac_bayes(model, train, *, delta: float = 0.05, gamma: float = 1.0) -> Bound:
    """Liao, Urtasun & Zemel (ICLR 2021), Thm 3.2, with the O(.) constant set to 1:

    ``sqrt((B^2 d^(l-1) l^2 h ln(l h) prod_i s_i^2 sum_i F_i^2/s_i^2 + ln(m l / delta)) / (gamma^2 m))``

    where ``l - 1`` is the number of message-passing layers (the exponent of ``d``)."""
    delta, gamma = _check_delta(delta), _check_gamma(gamma)
    stats = _stats(model, train)
    structure = float(stats.max_degree_plus_one) ** len(stats.propagation_norms)
    return Bound(
        "liao_gcn_pac_bayes",
        _pac_bayes_gcn_form(stats, structure, delta, gamma),
        {**_norm_inputs(stats), "delta": delta, "gamma": gamma, "structure_factor": structure},
        (
            "gap of the gamma-margin loss (test 0-1 loss minus train gamma-margin loss)",
            "ReLU (1-Lipschitz, positively homogeneous) activations, mean readout",
            "d = max degree + 1; d^(number of message-passing layers)",
            "O(.) constant set to 1",
        ),
        "Liao, Urtasun, Zemel. A PAC-Bayesian approach to generalization bounds for GNNs. "
        "ICLR 2021, Thm 3.2",
    )


def ju_pac_bayes(model, train, *, delta: float = 0.05, gamma: float = 1.0) -> Bound:
    """Ju, Li, Sharma & Zhang (AISTATS 2023): Liao's GCN bound with the degree power
    ``d^(l-1)`` (which stands for ``d^((l-1)/2)`` outside the square root) replaced by the
    diffusion norms, ``prod_k max_G ||P_G^(k)||_2^2`` over the message-passing layers."""
    delta, gamma = _check_delta(delta), _check_gamma(gamma)
    stats = _stats(model, train)
    structure = math.prod(p**2 for p in stats.propagation_norms)
    return Bound(
        "ju_pac_bayes",
        _pac_bayes_gcn_form(stats, structure, delta, gamma),
        {**_norm_inputs(stats), "delta": delta, "gamma": gamma, "structure_factor": structure},
        (
            "gap of the gamma-margin loss",
            "ReLU activations, mean readout",
            "||P_G||_2 of the operator each layer applies (power iteration), max over graphs",
            "O(.) constant set to 1",
        ),
        "Ju, Li, Sharma, Zhang. Generalization in GNNs: improved PAC-Bayesian bounds on graph "
        "diffusion. AISTATS 2023",
    )


def liao_mpgnn_pac_bayes(model, train, *, delta: float = 0.05, gamma: float = 1.0) -> Bound:
    """Liao et al. Thm 3.4 in the form restated by Ju et al., for an MPGNN whose message-passing
    weight ``W_1`` is shared across ``l - 1`` steps, with readout ``W_l``:

    ``sqrt(42^2 B^2 max(zeta^-(l+1), (lambda xi)^((l+1)/l))^2 l^2 h ln(4 l h)
    (2 s_1^2 r_1^2 + s_l^2 r_l^2) / (gamma^2 m) + ln(m l / delta) / (gamma^2 m))``

    with ``zeta = min(s_1, s_l)``, ``lambda = s_1 s_l``, ``xi = ((d s_1)^(l-1) - 1)/(d s_1 - 1)``
    (``l - 1`` when ``d s_1 = 1``) and ``r_i^2 = F_i^2 / s_i^2``. The model must expose
    ``shared_steps`` (the ``l - 1`` steps) and have exactly two weight matrices."""
    delta, gamma = _check_delta(delta), _check_gamma(gamma)
    steps = getattr(model, "shared_steps", None)
    stats = _stats(model, train)
    if not isinstance(steps, int) or len(stats.spectral) != 2:
        raise ValueError(
            "liao_mpgnn_pac_bayes needs a weight-sharing MPGNN: an int attribute "
            f"'shared_steps' (got {steps!r}) and exactly 2 weight matrices (got "
            f"{len(stats.spectral)}), e.g. mpnn_gen.MPGNN"
        )
    depth, h, m, d, b = (
        steps + 1,
        stats.width,
        stats.m,
        stats.max_degree_plus_one,
        stats.max_feature_norm,
    )
    s1, sl = stats.spectral
    f1, fl = stats.frobenius
    zeta, lam = min(s1, sl), s1 * sl
    xi = (
        float(depth - 1)
        if math.isclose(d * s1, 1.0)
        else ((d * s1) ** (depth - 1) - 1) / (d * s1 - 1)
    )
    growth = max(zeta ** (-(depth + 1)), (lam * xi) ** ((depth + 1) / depth))
    complexity = (
        42**2 * b**2 * growth**2 * depth**2 * h * math.log(4 * depth * h) * (2 * f1**2 + fl**2)
    )
    value = math.sqrt((complexity + math.log(m * depth / delta)) / (gamma**2 * m))
    return Bound(
        "liao_mpgnn_pac_bayes",
        value,
        {**_norm_inputs(stats), "delta": delta, "gamma": gamma, "xi": xi, "zeta": zeta},
        (
            "gap of the gamma-margin loss",
            "weights shared across the l - 1 message-passing steps; readout W_l",
            "1-Lipschitz activation, message and aggregation functions (ReLU, sum)",
            "zeta^-(l+1) as in Liao (Ju's text prints zeta^(-l+1)); ln(m l/delta) term as in Thm 3.2",
            "Ju's two-matrix form (42^2, ln(4lh), 2 F_1^2 + F_l^2); Liao's printed Thm 3.4 has "
            "three matrices (input W_1, message W_2, readout W_l), ln(lh) and no explicit 42^2",
        ),
        "Liao, Urtasun, Zemel. ICLR 2021, Thm 3.4 (as restated by Ju et al., AISTATS 2023)",
    )


def compositional_pac_bayes(
    model, train, *, delta: float = 0.05, gamma: float = 1.0, lipschitz_product: float = 1.0
) -> Bound:
    """Brilliantov, Souza & Garg (NeurIPS 2024), the GNN case of their Lemma 2 (``from_gnn`` and
    ``compute_bound`` in their ``bounds.py``), over all ``n`` weight matrices:

    ``sqrt((max(1, sum F_i^2) T^2 (sum 1/s_i)^2 h ln(n h) C^2 / eta^2 + ln(m/delta max(1, 1/C)))
    / (gamma^2 m))`` with ``T = prod s_i``, ``eta = 1/(6 n)``, ``C = B d^((n-1)/2) Lip``."""
    delta, gamma = _check_delta(delta), _check_gamma(gamma)
    stats = _stats(model, train)
    n, h, m = len(stats.spectral), stats.width, stats.m
    c_norm = stats.max_feature_norm * stats.max_degree_plus_one ** ((n - 1) / 2) * lipschitz_product
    eta = 1 / (6 * n)
    frobenius = max(1.0, sum(f**2 for f in stats.frobenius))
    t = math.prod(stats.spectral)
    inverse_sum = sum(1 / s for s in stats.spectral)
    complexity = frobenius * t**2 * inverse_sum**2 * h * math.log(n * h) * c_norm**2 / eta**2
    value = math.sqrt((complexity + math.log(m / delta * max(1.0, 1 / c_norm))) / (gamma**2 * m))
    return Bound(
        "compositional_pac_bayes",
        value,
        {**_norm_inputs(stats), "delta": delta, "gamma": gamma, "C_norm": c_norm, "eta": eta},
        (
            "gap of the gamma-margin loss",
            f"product of activation Lipschitz constants = {lipschitz_product}",
            "d = max degree + 1 in C_norm (their code's default is d = 10)",
        ),
        "Brilliantov, Souza, Garg. Compositional PAC-Bayes. NeurIPS 2024 "
        "(Aalto-QuML/Compositional-PAC-Bayes, bounds.py)",
    )


def garg_rademacher(
    model, train, *, delta: float = 0.05, gamma: float = 1.0, activation_lipschitz: float = 1.0
) -> Bound:
    """Margin/Rademacher bound of Garg, Jegelka & Jaakkola (ICML 2020), Lemma 1 (margin bound)
    with the tree Rademacher complexity of their Proposition 7, for ``L`` message-passing steps:

    ``2 Rad + 3 sqrt(ln(2/delta) / (2 m))``, with
    ``Rad = 4/(gamma m) + 24 r B_beta Z sqrt(3 ln Q) / (gamma sqrt(m))``,
    ``M = C_phi ((C d)^L - 1) / (C d - 1)`` (``C_phi L`` when ``C d = 1``), ``C = C_phi B_2``,
    ``R = d B_1 B_x M`` (the bound on an aggregated message), ``Z = C_phi B_1 B_x + C_phi B_2 R``
    and ``Q = 24 B_beta sqrt(m) max(Z, M sqrt(r) max(B_x B_1, R B_2))``.

    Message ``g`` and aggregation ``rho`` are taken 1-Lipschitz (``C_g = C_rho = 1``: identity /
    sum) and the activation unbounded (ReLU), so the paper's ``min(b sqrt(r), .)`` caps reduce to
    their second argument. ``B_1 = B_2`` = the largest spectral norm of a message-passing weight
    (the paper shares one ``W_1, W_2`` across steps), ``B_beta`` = the product of the spectral
    norms of the node-wise layers after the last message-passing layer, ``r = h`` the largest
    width, ``d`` = max degree + 1.

    Provenance (see the README): the constants (4, 24, sqrt 3, the 2 and 3 of Lemma 1) and the
    form of ``Q`` are from memory of the paper, which our tools could not open. The structure is
    corroborated by Liao et al. (ICLR 2021, Table 1), which restates this bound's dependence as
    ``d^(l-1) sqrt(log d^(2l-3))`` on the degree, ``h sqrt(log h)`` on the width and
    ``lambda C xi sqrt(log(||W_2|| lambda xi^2))`` on the weights; the formula above has exactly
    these dependences (``r B_beta Z ~ h d lambda C xi``; ``Q ~ d ||W_2|| lambda xi^2``)."""
    delta, gamma = _check_delta(delta), _check_gamma(gamma)
    if isinstance(activation_lipschitz, bool) or not activation_lipschitz > 0:
        raise ValueError(f"activation_lipschitz must be > 0, got {activation_lipschitz!r}")
    layers = extract_layers(model)
    graph_positions = [i for i, layer in enumerate(layers) if layer.operator != "identity"]
    if not graph_positions:
        raise ValueError("garg_rademacher needs at least one message-passing layer, got none")
    if graph_positions != list(range(len(graph_positions))):
        raise ValueError(
            "garg_rademacher needs one weight matrix per message-passing step followed by "
            "node-wise/readout layers; got node-wise layers between message-passing layers "
            f"(operators {[layer.operator for layer in layers]})"
        )
    stats = _stats(model, train)
    steps = len(graph_positions)
    m, d, b_x, r = stats.m, stats.max_degree_plus_one, stats.max_feature_norm, stats.width
    c_phi = activation_lipschitz
    b_w = max(stats.spectral[:steps])
    b_beta = math.prod(stats.spectral[steps:]) if steps < len(stats.spectral) else 1.0
    percolation = c_phi * b_w
    growth = percolation * d
    unit = math.isclose(growth, 1.0, rel_tol=1e-6)  # weights are float32
    geometric = float(steps) if unit else (growth**steps - 1) / (growth - 1)
    lipschitz_sum = c_phi * geometric
    message = d * b_w * b_x * lipschitz_sum
    z = c_phi * b_w * b_x + c_phi * b_w * message
    q = (
        24
        * b_beta
        * math.sqrt(m)
        * max(z, lipschitz_sum * math.sqrt(r) * max(b_x * b_w, message * b_w))
    )
    if not q > 1:
        raise ValueError(
            f"garg_rademacher: the log argument Q = {q!r} must exceed 1 (weights or features "
            "too small for the bound's covering argument); got B_beta "
            f"{b_beta!r}, Z {z!r}"
        )
    rademacher = 4 / (gamma * m) + 24 * r * b_beta * z * math.sqrt(3 * math.log(q)) / (
        gamma * math.sqrt(m)
    )
    value = 2 * rademacher + 3 * math.sqrt(math.log(2 / delta) / (2 * m))
    regime = "Cd = 1" if unit else ("Cd < 1" if growth < 1 else "Cd > 1")
    return Bound(
        "garg_rademacher",
        value,
        {
            **_norm_inputs(stats),
            "delta": delta,
            "gamma": gamma,
            "B_1": b_w,
            "B_2": b_w,
            "B_beta": b_beta,
            "C": percolation,
            "M": lipschitz_sum,
            "R": message,
            "Z": z,
            "Q": q,
            "rademacher": rademacher,
            "r": r,
            "L": steps,
        },
        (
            "gap of the gamma-margin loss; binary classification in the paper (multi-class "
            "readout treated like the other margin bounds)",
            "weights shared across steps in the paper; per-layer weights replaced by the largest "
            "spectral norm (B_1 = B_2 = max_k s_k)",
            f"C_phi = {activation_lipschitz}, message g and aggregation rho 1-Lipschitz "
            "(identity/sum), activation unbounded (ReLU), d = max degree + 1",
            "RECONSTRUCTED constants: 4, 24, sqrt(3), Q and Lemma 1's 2 and 3 from memory of "
            "Garg et al. Prop. 7 / Lemma 1; dependences checked against Liao et al. ICLR'21 "
            "Table 1; the paper itself was not readable",
        ),
        "Garg, Jegelka, Jaakkola. Generalization and representational limits of graph neural "
        "networks. ICML 2020, Lemma 1 + Prop. 7 (constants reconstructed)",
        extra={"regime": regime},
    )


def _gcn_frobenius_norms(graph) -> torch.Tensor:
    """``||D^-1/2 (A + I) D^-1/2||_F`` of each graph of a :class:`GraphBatch`."""
    src, dst = graph.edge_index
    degree = torch.bincount(dst, minlength=graph.num_nodes).double() + 1
    squares = torch.zeros(graph.num_graphs, dtype=torch.float64)
    squares.index_add_(0, graph.batch, 1 / degree)
    squares.index_add_(0, graph.batch[dst], 1 / (degree[src] * degree[dst]))
    return squares.sqrt()


def aminian_mean_field(
    model,
    train,
    *,
    delta: float = 0.05,
    alpha: float = 100.0,
    activation: str = "relu",
) -> Bound:
    """Mean-field bounds of Aminian, He, Reinert, Szpruch & Cohen (ICML 2024) for a one-layer
    GCN with mean readout, in the form of their code (``SherylHYX/GNN_MF_GE``, ``models.py``,
    ``GCN.Rademacher_mean_pooling_generalization_bound`` and
    ``GCN.mean_pooling_generalization_bound``). ``value`` is the Rademacher (high-probability)
    version on the logistic loss:

    ``4 M_phi sqrt(M_phi alpha / m) + 3 M_l sqrt(ln(2/delta) / (2 m))``,
    ``M_phi = h w_max min(B sqrt(d_max + 1) w_1, cap)``, ``M_l = ln(1 + exp(M_phi))``;

    ``extra['expected_gap_bound']`` is the functional-derivative version
    ``alpha M_phi'^2 G^2 / m`` with ``M_phi' = h w_max min(B w_1, cap)`` and
    ``G = min(sqrt((d_max + 1)/(d_min + 1)), max_G ||D^-1/2 (A+I) D^-1/2||_F)``.

    ``w_1`` is the largest row norm of the GCN weight (one hidden neuron's input weights);
    ``w_max`` the largest ``|w_j|`` of the binary readout ``w = W[1] - W[0]`` (two classes) or
    ``W[0]`` (one output); ``cap = 1`` for ``tanh`` and none (inf) for ``relu``. The factor ``h``
    writes our network ``sum_j w_j s(.)`` as the mean-field average ``(1/h) sum_j (h w_j) s(.)``
    (their model divides by ``h`` itself). ``alpha`` is the inverse regularisation strength
    (their training uses weight decay ``1/(alpha h)``; their default ``alpha = 100``)."""
    delta = _check_delta(delta)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not alpha > 0:
        raise ValueError(f"alpha must be a number > 0, got {alpha!r}")
    caps = {"relu": math.inf, "tanh": 1.0}
    if activation not in caps:
        raise ValueError(f"activation must be 'relu' or 'tanh', got {activation!r}")
    layers = extract_layers(model)
    if [layer.operator for layer in layers] != ["gcn", "identity"]:
        raise ValueError(
            "aminian_mean_field covers one GCNConv layer followed by a linear readout; got "
            f"operators {[layer.operator for layer in layers]}"
        )
    first, readout = (layer.weight.detach().double() for layer in layers)
    if readout.shape[0] == 2:
        w = readout[1] - readout[0]
    elif readout.shape[0] == 1:
        w = readout[0]
    else:
        raise ValueError(
            f"aminian_mean_field needs a binary readout (1 or 2 outputs), got {readout.shape[0]}"
        )
    graphs = _graph_list(train)
    m, h = len(graphs), int(first.shape[0])
    flat = as_graph_batch(graphs, use_features=False)
    degree = torch.bincount(flat.edge_index[1], minlength=flat.num_nodes)
    d_max, d_min = int(degree.max()), int(degree.min())
    b = float(torch.cat([g.x for g in graphs]).double().norm(dim=1).max())
    w_1 = float(first.norm(dim=1).max())
    w_max = float(w.abs().max())
    cap = caps[activation]
    m_phi = h * w_max * min(b * math.sqrt(d_max + 1) * w_1, cap)
    m_loss = m_phi + math.log1p(math.exp(-m_phi))  # ln(1 + e^M_phi), overflow-free
    value = 4 * m_phi * math.sqrt(m_phi * alpha / m) + 3 * m_loss * math.sqrt(
        math.log(2 / delta) / (2 * m)
    )
    g_value = min(math.sqrt((d_max + 1) / (d_min + 1)), float(_gcn_frobenius_norms(flat).max()))
    m_phi_expected = h * w_max * min(b * w_1, cap)
    expected = alpha * m_phi_expected**2 * g_value**2 / m
    return Bound(
        "aminian_mean_field",
        value,
        {
            "m": m,
            "h": h,
            "B": b,
            "d_max": d_max,
            "d_min": d_min,
            "w_1": w_1,
            "w_max": w_max,
            "M_phi": m_phi,
            "M_loss": m_loss,
            "G": g_value,
            "alpha": alpha,
            "delta": delta,
        },
        (
            "gap of the logistic loss (not 0-1 or margin); binary readout",
            "mean-field regime: the trained weights are the minimiser of the entropy-regularised "
            "risk with regularisation 1/alpha (their training: weight decay 1/(alpha h)); a "
            "model trained otherwise only gets the formula's value, not a certified bound",
            f"activation {activation} (|s| <= {cap}); one GCN layer, mean readout; biases ignored",
            "M_loss = ln(1 + e^M_phi) bounds the logistic loss (their code uses ln(1 + e^w_max), "
            "equal when the tanh cap binds); w_max = max |w_j| (their code: signed max)",
        ),
        "Aminian, He, Reinert, Szpruch, Cohen. Generalization error of graph neural networks "
        "in the mean-field regime. ICML 2024 (SherylHYX/GNN_MF_GE, models.py)",
        extra={"expected_gap_bound": expected, "M_phi_expected": m_phi_expected},
    )


def _vc_value(vc: int, m: int, delta: float) -> float:
    return math.sqrt(2 * vc * math.log(math.e * m / vc) / m) + math.sqrt(
        math.log(1 / delta) / (2 * m)
    )


def vc_wl(
    model,
    train,
    *,
    delta: float = 0.05,
    rounds: int | None = None,
    domain=None,
    use_features: bool = True,
) -> Bound:
    """Morris et al. (ICML 2023): the VC dimension of MPNNs with ``L`` layers on a set of graphs
    is at most the number of graphs 1-WL distinguishes after ``L`` rounds (tight for wide enough
    MPNNs). We count the 1-WL classes among ``domain`` (default: the training graphs, node
    features as initial colours) and plug the count into the standard VC bound for 0-1 loss
    (Mohri et al., Foundations of ML, Cor. 3.19):
    ``sqrt(2 VC ln(e m / VC) / m) + sqrt(ln(1/delta) / (2 m))``."""
    from mpnn_gen.wl import refine

    delta = _check_delta(delta)
    graphs = _graph_list(train, need_features=use_features)
    if rounds is None:
        rounds = sum(layer.operator != "identity" for layer in extract_layers(model))
    result = refine(domain if domain is not None else graphs, rounds, use_features=use_features)
    vc = result.num_classes(rounds)
    m = len(graphs)
    value = math.inf if vc > m else _vc_value(vc, m, delta)
    return Bound(
        "vc_wl",
        value,
        {
            "m": m,
            "rounds": rounds,
            "wl_classes": vc,
            "wl_colours": result.num_colours(rounds),
            "delta": delta,
        },
        (
            "0-1 loss gap; binary classification",
            "VC dimension taken as the 1-WL class count on the domain graphs (exact ceiling only "
            "when the domain holds every graph of the input space, e.g. the atlas for n <= 7)",
        ),
        "Morris, Geerts, Tönshoff, Grohe. WL meet VC. ICML 2023; VC bound: Mohri et al. Cor 3.19",
    )


def unseen_colour_fraction(train, test, *, rounds: int, use_features: bool = True) -> Bound:
    """OOD diagnostic (Yehudai et al. 2021; Le & Jegelka 2023): the fraction of test nodes whose
    depth-``rounds`` 1-WL colour never occurs in the training graphs. An MPNN's output on such
    nodes is not constrained by training. ``extra['graph_fraction']`` is the fraction of test
    graphs with at least one unseen colour."""
    from mpnn_gen.wl import refine

    check_int_in_range("rounds", rounds, 0)
    train_graphs = _graph_list(train, need_features=use_features)
    test_graphs = _graph_list(test, "test", need_features=use_features)
    # One joint refinement, so that training and test colours are hashes of the same round.
    joint = refine(train_graphs + test_graphs, rounds, use_features=use_features)
    colours = joint.node_colours[min(rounds, len(joint.node_colours) - 1)]
    in_test = joint.batch >= len(train_graphs)
    unseen = ~torch.isin(colours[in_test], colours[~in_test])
    test_batch = joint.batch[in_test] - len(train_graphs)
    per_graph = torch.zeros(len(test_graphs), dtype=torch.long).index_add_(
        0, test_batch, unseen.long()
    )
    return Bound(
        "unseen_wl_colours",
        float(unseen.double().mean()),
        {"rounds": rounds, "test_nodes": int(unseen.numel()), "unseen_nodes": int(unseen.sum())},
        (
            f"node features as initial colours: {use_features}",
            "colours from joint-comparable 64-bit hashes",
        ),
        "Yehudai et al. ICML 2021; Le & Jegelka 2023 (d-patterns)",
        kind="diagnostic",
        extra={"graph_fraction": float((per_graph > 0).double().mean())},
    )


def stability_verma_zhang(
    model,
    data,
    train_mask: torch.Tensor,
    *,
    steps: int,
    lr: float,
    delta: float = 0.05,
    loss_bound: float = 1.0,
    loss_lipschitz: float = 1.0,
) -> Bound:
    """Uniform-stability bound for a one-layer GCN (node classification) trained by ``steps``
    SGD steps of size ``lr`` (Verma & Zhang, KDD 2019):
    ``2 beta + (4 m beta + M) sqrt(ln(1/delta) / (2 m))`` with
    ``beta = 2 lr steps (L lambda_max B)^2 / m``: the convex-SGD stability of Hardt et al. with
    the loss's Lipschitz constant in the weights, ``L lambda_max B``, where ``lambda_max`` is the
    largest absolute eigenvalue of the layer's filter and ``B`` the largest feature norm."""
    delta = _check_delta(delta)
    layers = extract_layers(model)
    graph_layers = [layer for layer in layers if layer.operator != "identity"]
    if len(graph_layers) != 1:
        raise ValueError(
            f"stability_verma_zhang covers one-layer GCNs; model has {len(graph_layers)} "
            "message-passing layers"
        )
    check_int_in_range("steps", steps, 1)
    lr = check_real_in_range("lr", lr, 0.0)
    check_real_in_range("loss_bound", loss_bound, 0.0)
    check_real_in_range("loss_lipschitz", loss_lipschitz, 0.0)
    (data,) = _graph_list(data, "data")
    if not isinstance(train_mask, torch.Tensor) or train_mask.dtype != torch.bool:
        raise TypeError(f"train_mask must be a bool tensor, got {train_mask!r}")
    if train_mask.shape != (data.num_nodes,):
        raise ValueError(
            f"train_mask must have shape ({data.num_nodes},), one entry per node, got "
            f"{tuple(train_mask.shape)}"
        )
    m = int(train_mask.sum())
    if m == 0:
        raise ValueError("train_mask selects no node; need at least one training node")
    flat = as_graph_batch(data, use_features=False)
    lam = float(operator_norm(graph_layers[0].operator, flat).max())
    b = float(data.x.double().norm(dim=1).max())
    beta = 2 * lr * steps * (loss_lipschitz * lam * b) ** 2 / m
    value = 2 * beta + (4 * m * beta + loss_bound) * math.sqrt(math.log(1 / delta) / (2 * m))
    return Bound(
        "stability_verma_zhang",
        value,
        {"m": m, "lambda_max": lam, "B": b, "steps": steps, "lr": lr, "beta": beta, "delta": delta},
        (
            "one graph-convolution layer, loss convex and L-Lipschitz in the weights (as Verma & "
            "Zhang: single-layer GCN), bounded by M",
            "SGD with one example per step; beta from Hardt et al.'s convex argument",
        ),
        "Verma, Zhang. Stability and generalization of GCNs. KDD 2019",
    )


def transductive_rademacher_sgc(
    features: torch.Tensor,
    train_mask: torch.Tensor,
    weight_norm: float,
    *,
    gamma: float = 1.0,
    delta: float = 0.05,
    samples: int = 256,
    seed: int = 0,
) -> Bound:
    """El-Yaniv & Pechyony (2009) transductive Rademacher bound for a linear model on fixed
    (already propagated, e.g. SGC's ``P^K X``) node features ``z_i`` with ``||w||_2 <= weight_norm``
    (applied to GCNs by Esser et al., NeurIPS 2021). Gap term:
    ``R/gamma + c0 Q sqrt(min(m, u)) + sqrt(S Q ln(1/delta) / 2)`` with ``Q = 1/m + 1/u``,
    ``S = (m+u) / ((m+u-1/2)(1 - 1/(2 max(m,u))))``, ``c0 = sqrt(32 ln(4e)/3)`` and
    ``R = Q weight_norm E||sum_i sigma_i z_i||_2`` (sigma_i = +-1 with probability
    ``p = m u/(m+u)^2`` each, else 0), estimated from ``samples`` draws."""
    gamma, delta = _check_gamma(gamma), _check_delta(delta)
    weight_norm = check_real_in_range("weight_norm", weight_norm, 0.0)
    check_int_in_range("samples", samples, 1)
    if not isinstance(train_mask, torch.Tensor) or train_mask.dtype != torch.bool:
        raise TypeError(f"train_mask must be a bool tensor, got {train_mask!r}")
    check_ndim("train_mask", train_mask, 1)
    check_floating("features", features)
    check_ndim("features", features, 2)
    if features.shape[0] != train_mask.shape[0]:
        raise ValueError(
            f"features must have one row per node of train_mask ({train_mask.shape[0]}), got "
            f"shape {tuple(features.shape)}"
        )
    check_finite("features", features)
    m, total = int(train_mask.sum()), int(train_mask.numel())
    u = total - m
    if m == 0 or u == 0:
        raise ValueError(f"need both training and test nodes, got m={m}, u={u}")
    p = m * u / (m + u) ** 2
    generator = torch.Generator().manual_seed(seed)
    draws = torch.rand(samples, total, generator=generator, dtype=torch.float64)
    sigma = (draws < p).double() - (draws > 1 - p).double()
    expected_norm = float((sigma @ features.double()).norm(dim=1).mean())
    q = 1 / m + 1 / u
    s = (m + u) / ((m + u - 0.5) * (1 - 1 / (2 * max(m, u))))
    rademacher = q * weight_norm * expected_norm
    value = (
        rademacher / gamma
        + EL_YANIV_C0 * q * math.sqrt(min(m, u))
        + math.sqrt(s * q * math.log(1 / delta) / 2)
    )
    return Bound(
        "transductive_rademacher_sgc",
        value,
        {"m": m, "u": u, "rademacher": rademacher, "weight_norm": weight_norm, "samples": samples},
        (
            "linear model on fixed propagated features (SGC); gap of the gamma-margin loss on "
            "the unlabelled nodes",
            "Rademacher term by Monte Carlo over sigma",
        ),
        "El-Yaniv, Pechyony. Transductive Rademacher complexity. JAIR 2009; Esser, Vankadara, "
        "Ghoshdastidar. NeurIPS 2021",
    )
