import math

import mpnn_gen as M
import networkx as nx
import numpy as np
import pytest
import torch
from mpnn_gen.graphs import as_graph_batch, to_pyg

X = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])  # max feature norm B = 5


def path_data(y=0):
    return to_pyg(nx.path_graph(3), features=X.clone(), y=y)  # max degree 2, so d = 3


def tiny_gcn():
    model = M.GCN(2, 2, 2, depth=1)
    with torch.no_grad():
        model.convs[0].lin.weight.copy_(torch.diag(torch.tensor([2.0, 1.0])))  # s=2, F^2=5
        model.readout.weight.copy_(torch.diag(torch.tensor([1.0, 3.0])))  # s=3, F^2=10
    return model


def tiny_mpgnn():
    model = M.MPGNN(2, 2, 2, steps=2)
    with torch.no_grad():
        model.conv.lin_root.weight.copy_(torch.eye(2))
        model.conv.lin_rel.weight.copy_(0.5 * torch.eye(2))  # stacked: s^2=1.25, F^2=2.5
        model.readout.weight.copy_(torch.diag(torch.tensor([1.0, 2.0])))  # s=2, F^2=5
    return model


TRAIN = [path_data(), path_data(1)]  # m = 2


def test_liao_gcn_by_hand():
    bound = M.liao_gcn_pac_bayes(tiny_gcn(), TRAIN, delta=0.1, gamma=0.5)
    # B^2 d^(l-1) l^2 h ln(lh) prod s^2 sum F^2/s^2 with B=5, d=3, l=2, h=2
    complexity = 25 * 3 * 4 * 2 * math.log(4) * (4 * 9) * (5 / 4 + 10 / 9)
    expected = math.sqrt((complexity + math.log(2 * 2 / 0.1)) / (0.25 * 2))
    assert bound.value == pytest.approx(expected, rel=1e-9)
    assert bound.inputs["d"] == 3 and bound.inputs["B"] == pytest.approx(5.0)
    assert any("d = max degree + 1" in a for a in bound.assumptions)


def test_ju_replaces_degree_power_by_diffusion_norm():
    bound = M.ju_pac_bayes(tiny_gcn(), TRAIN, delta=0.1, gamma=0.5)
    # GCN's D^-1/2 (A+I) D^-1/2 has spectral norm exactly 1 on a connected graph.
    assert bound.inputs["operator_norm_0"] == pytest.approx(1.0, abs=1e-9)
    complexity = 25 * 1 * 4 * 2 * math.log(4) * (4 * 9) * (5 / 4 + 10 / 9)
    expected = math.sqrt((complexity + math.log(2 * 2 / 0.1)) / (0.25 * 2))
    assert bound.value == pytest.approx(expected, rel=1e-9)
    assert bound.value < M.liao_gcn_pac_bayes(tiny_gcn(), TRAIN, delta=0.1, gamma=0.5).value


def test_compositional_by_hand():
    bound = M.compositional_pac_bayes(tiny_gcn(), TRAIN, delta=0.1, gamma=0.5)
    c_norm = 5 * 3**0.5  # B d^((n-1)/2), n = 2 matrices
    eta = 1 / 12
    complexity = 15 * 36 * (1 / 2 + 1 / 3) ** 2 * 2 * math.log(4) * c_norm**2 / eta**2
    expected = math.sqrt((complexity + math.log(2 / 0.1 * 1)) / (0.25 * 2))
    assert bound.value == pytest.approx(expected, rel=1e-9)


def test_liao_mpgnn_by_hand():
    bound = M.liao_mpgnn_pac_bayes(tiny_mpgnn(), TRAIN, delta=0.1, gamma=0.5)
    s1, sl, depth, h, d = 1.25**0.5, 2.0, 3, 4, 3
    zeta, lam = min(s1, sl), s1 * sl
    xi = ((d * s1) ** (depth - 1) - 1) / (d * s1 - 1)
    growth = max(zeta ** (-(depth + 1)), (lam * xi) ** ((depth + 1) / depth))
    complexity = 42**2 * 25 * growth**2 * depth**2 * h * math.log(4 * depth * h) * (2 * 2.5 + 5)
    expected = math.sqrt((complexity + math.log(2 * 3 / 0.1)) / (0.25 * 2))
    assert bound.value == pytest.approx(expected, rel=1e-9)


def test_liao_mpgnn_rejects_unshared_model():
    with pytest.raises(ValueError, match="shared_steps"):
        M.liao_mpgnn_pac_bayes(tiny_gcn(), TRAIN)


def test_vc_wl_by_hand():
    graphs = [to_pyg(nx.path_graph(3)), to_pyg(nx.complete_graph(3)), to_pyg(nx.path_graph(3))]
    bound = M.vc_wl(tiny_gcn(), graphs, delta=0.05)
    assert bound.inputs["rounds"] == 1 and bound.inputs["wl_classes"] == 2
    expected = math.sqrt(2 * 2 * math.log(math.e * 3 / 2) / 3) + math.sqrt(math.log(20) / 6)
    assert bound.value == pytest.approx(expected, rel=1e-12)


def test_unseen_colours_by_hand():
    train = [to_pyg(nx.path_graph(3))]
    test = [to_pyg(nx.complete_graph(3)), to_pyg(nx.path_graph(3))]
    # After one round a triangle node looks like the path's centre; after two it does not.
    assert M.unseen_colour_fraction(train, test, rounds=1).value == 0.0
    two = M.unseen_colour_fraction(train, test, rounds=2)
    assert two.value == 0.5 and two.extra["graph_fraction"] == 0.5 and two.kind == "diagnostic"


def test_stability_by_hand():
    from torch_geometric.nn import GCNConv

    data = path_data()
    mask = torch.tensor([True, True, False])
    bound = M.stability_verma_zhang(GCNConv(2, 2), data, mask, steps=10, lr=0.01, delta=0.1)
    beta = 2 * 0.01 * 10 * (1 * 1.0 * 5) ** 2 / 2  # lambda_max = 1 for the GCN filter
    expected = 2 * beta + (4 * 2 * beta + 1) * math.sqrt(math.log(10) / 4)
    assert bound.value == pytest.approx(expected, rel=1e-9)


def test_transductive_by_hand():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    mask = torch.tensor([True, False, False, True])
    bound = M.transductive_rademacher_sgc(z, mask, 2.0, gamma=0.5, delta=0.1, samples=64, seed=3)
    m = u = 2
    p = m * u / 16
    draws = torch.rand(64, 4, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    norms = []
    for row in draws.tolist():
        sigma = [1.0 if r < p else (-1.0 if r > 1 - p else 0.0) for r in row]
        total = [sum(s * float(z[i, k]) for i, s in enumerate(sigma)) for k in range(2)]
        norms.append(math.hypot(*total))
    q = 1 / 2 + 1 / 2
    s = 4 / (3.5 * (1 - 1 / 4))
    c0 = math.sqrt(32 * math.log(4 * math.e) / 3)
    expected = (
        q * 2.0 * np.mean(norms) / 0.5 + c0 * q * math.sqrt(2) + math.sqrt(s * q * math.log(10) / 2)
    )
    assert bound.value == pytest.approx(expected, rel=1e-9)
    assert c0 == pytest.approx(5.05, abs=0.01)


def scaled(model, factor):
    with torch.no_grad():
        model.readout.weight.mul_(factor)
    return model


@pytest.mark.parametrize(
    "bound_fn", [M.liao_gcn_pac_bayes, M.ju_pac_bayes, M.compositional_pac_bayes]
)
def test_monotone_in_norms_samples_and_depth(bound_fn):
    base = bound_fn(tiny_gcn(), TRAIN).value
    assert math.isfinite(base) and base > 0
    assert bound_fn(scaled(tiny_gcn(), 2.0), TRAIN).value > base
    assert bound_fn(tiny_gcn(), TRAIN * 4).value < base
    torch.manual_seed(0)
    shallow, deep = M.GCN(2, 4, 2, depth=1), M.GCN(2, 4, 2, depth=3)
    with torch.no_grad():
        for model in (shallow, deep):
            for p in model.parameters():
                p.copy_(torch.eye(*p.shape) * 2.0) if p.dim() == 2 else p.zero_()
    assert bound_fn(deep, TRAIN).value > bound_fn(shallow, TRAIN).value


def test_mpgnn_monotone_in_steps():
    two, four = tiny_mpgnn(), tiny_mpgnn()
    four.shared_steps = 4
    assert M.liao_mpgnn_pac_bayes(four, TRAIN).value > M.liao_mpgnn_pac_bayes(two, TRAIN).value


@pytest.mark.parametrize("delta", [0, 1, 1.5, -0.1, True])
def test_delta_outside_unit_interval(delta):
    with pytest.raises(ValueError, match=r"delta must be a number in \(0, 1\)"):
        M.liao_gcn_pac_bayes(tiny_gcn(), TRAIN, delta=delta)


def test_empty_dataset_and_bad_gamma():
    with pytest.raises(ValueError, match="empty dataset"):
        M.ju_pac_bayes(tiny_gcn(), [])
    with pytest.raises(ValueError, match="gamma must be a finite number > 0, got 0"):
        M.ju_pac_bayes(tiny_gcn(), TRAIN, gamma=0)


def dense_norm(operator, graph, eps=0.0):
    a = nx.to_numpy_array(graph)
    n = len(a)
    degree = a.sum(1)
    if operator == "gcn":
        s = np.diag((degree + 1) ** -0.5)
        p = s @ (a + np.eye(n)) @ s
    elif operator == "sum_root":
        p = np.hstack([np.eye(n), a])
    elif operator == "mean_root":
        p = np.hstack([np.eye(n), a / np.maximum(degree, 1)[:, None]])
    else:
        p = (1 + eps) * np.eye(n) + a
    return np.linalg.norm(p, 2)


@pytest.mark.parametrize("operator", ["gcn", "sum_root", "mean_root", "gin"])
def test_operator_norm_matches_dense_svd(operator):
    graphs = [nx.star_graph(5), nx.path_graph(4), nx.gnp_random_graph(9, 0.4, seed=1)]
    batch = as_graph_batch(graphs)
    norms = M.operator_norm(operator, batch, gin_eps=0.3, iterations=500)
    expected = [dense_norm(operator, g, 0.3) for g in graphs]
    np.testing.assert_allclose(norms.numpy(), expected, rtol=1e-6)


def test_norm_extraction_for_standard_layers():
    from torch_geometric.nn import GINConv, GraphConv, SAGEConv

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a = GraphConv(3, 4)
            self.b = SAGEConv(4, 5)
            self.c = GINConv(
                torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU(), torch.nn.Linear(6, 2))
            )
            self.head = torch.nn.Linear(2, 2)

    layers = M.extract_layers(Net())
    assert [layer.operator for layer in layers] == [
        "sum_root",
        "mean_root",
        "gin",
        "identity",
        "identity",
    ]
    assert [tuple(layer.weight.shape) for layer in layers] == [
        (8, 3),
        (10, 4),
        (6, 5),
        (2, 6),
        (2, 2),
    ]
    w = layers[0].weight.detach().double()
    assert layers[0].spectral == pytest.approx(float(np.linalg.norm(w.numpy(), 2)))


def test_unknown_layer_names_itself_and_registration():
    from torch_geometric.nn import GATConv

    class WithGat(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.attention = GATConv(2, 2)

    with pytest.raises(
        M.UnsupportedLayerError, match=r"'attention' of type GATConv.*register_layer"
    ):
        M.extract_layers(WithGat())

    class MyConv(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.eye(2) * 3)

    class WithCustom(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = MyConv()

    M.register_layer(MyConv, lambda module: ([module.weight], "sum"))
    layers = M.extract_layers(WithCustom())
    assert layers[0].operator == "sum" and layers[0].spectral == pytest.approx(3.0)


def test_measure_gap_counts_margin_errors():
    class Fixed(torch.nn.Module):
        def forward(self, x, edge_index, batch):
            return torch.tensor([[2.0, 0.0], [0.5, 0.0]])[: int(batch.max()) + 1]

    train = [path_data(0), path_data(0)]  # margins 2.0 and 0.5
    test = [path_data(1), path_data(0)]  # margins -2.0 and 0.5
    gap = M.measure_gap(Fixed(), train, test, gamma=1.0)
    assert (gap.train_error, gap.train_margin_loss) == (0.0, 0.5)
    assert (gap.test_error, gap.test_margin_loss) == (0.5, 1.0)
    assert gap.gap == 0.5 and gap.margin_gap == 0.0


def test_report_and_rank_correlation():
    rows = []
    for factor in (1.0, 2.0, 4.0):
        rows += M.report(scaled(tiny_gcn(), factor), TRAIN, TRAIN, bounds=[M.ju_pac_bayes, M.vc_wl])
    assert [row["bound"] for row in rows[:2]] == ["ju_pac_bayes", "vc_wl"]
    assert all(row["vacuous"] for row in rows if row["bound"] == "ju_pac_bayes")
    rows_with_gap = [{**row, "gap_01": i} for i, row in enumerate(rows)]
    tau = M.rank_correlations(rows_with_gap)
    assert tau["ju_pac_bayes"] == pytest.approx(1.0)
    assert math.isnan(tau["vc_wl"])


def _garg_by_hand(r, d, b_x, b_w, b_beta, steps_sum, m, gamma, delta):
    """Garg et al. Lemma 1 + Prop. 7 written out (C_phi = C_g = C_rho = 1, B_1 = B_2 = b_w)."""
    message = d * b_w * b_x * steps_sum  # R = d B_1 B_x M
    z = b_w * b_x + b_w * message  # Z = C_phi B_1 B_x + C_phi B_2 R
    q = (
        24
        * b_beta
        * math.sqrt(m)
        * max(z, steps_sum * math.sqrt(r) * max(b_x * b_w, message * b_w))
    )
    rad = 4 / (gamma * m) + 24 * r * b_beta * z * math.sqrt(3 * math.log(q)) / (
        gamma * math.sqrt(m)
    )
    return message, z, q, 2 * rad + 3 * math.sqrt(math.log(2 / delta) / (2 * m))


def test_garg_rademacher_by_hand():
    bound = M.garg_rademacher(tiny_gcn(), TRAIN, delta=0.1, gamma=0.5)
    # One message-passing step (L = 1): B_1 = B_2 = s_conv = 2, C = 2, d = 3, M = 1,
    # R = d B_1 B_x M = 3 * 2 * 5 = 30, Z = B_1 B_x + B_2 R = 10 + 60 = 70, B_beta = 3, r = 2,
    # Q = 24 * 3 * sqrt(2) * max(70, 1 * sqrt(2) * max(10, 60)) = 72 * 120 = 8640.
    rad = 4 / (0.5 * 2) + 24 * 2 * 3 * 70 * math.sqrt(3 * math.log(8640)) / (0.5 * math.sqrt(2))
    expected = 2 * rad + 3 * math.sqrt(math.log(2 / 0.1) / 4)
    assert bound.value == pytest.approx(expected, rel=1e-9)
    assert _garg_by_hand(2, 3, 5, 2, 3, 1, 2, 0.5, 0.1)[3] == pytest.approx(expected, rel=1e-12)
    assert bound.inputs["Z"] == pytest.approx(70.0) and bound.inputs["M"] == pytest.approx(1.0)
    assert bound.inputs["R"] == pytest.approx(30.0) and bound.inputs["Q"] == pytest.approx(8640)
    assert bound.extra["regime"] == "Cd > 1"
    assert any("RECONSTRUCTED" in a for a in bound.assumptions)


def test_garg_geometric_sum_over_depth():
    # Two GCN layers with weight 2I and readout I: C = 2, d = 3, Cd = 6, L = 2,
    # M = (6^2 - 1)/(6 - 1) = 7, R = 3 * 2 * 5 * 7 = 210, Z = 10 + 2 * 210 = 430, B_beta = 1,
    # Q = 24 sqrt(2) * max(430, 7 sqrt(2) * 420) = 141120.
    model = M.GCN(2, 2, 2, depth=2)
    with torch.no_grad():
        for conv in model.convs:
            conv.lin.weight.copy_(2 * torch.eye(2))
        model.readout.weight.copy_(torch.eye(2))
    bound = M.garg_rademacher(model, TRAIN, delta=0.1, gamma=0.5)
    assert bound.inputs["M"] == pytest.approx(7.0) and bound.inputs["Z"] == pytest.approx(430.0)
    assert bound.inputs["Q"] == pytest.approx(141120.0)
    rad = 4 / (0.5 * 2) + 24 * 2 * 1 * 430 * math.sqrt(3 * math.log(141120)) / (0.5 * math.sqrt(2))
    expected = 2 * rad + 3 * math.sqrt(math.log(20) / 4)
    assert bound.value == pytest.approx(expected, rel=1e-9)
    # Cd = 1 regime: weight I/3 gives C d = 1 and M = L = 2.
    with torch.no_grad():
        for conv in model.convs:
            conv.lin.weight.copy_(torch.eye(2) / 3)
    flat = M.garg_rademacher(model, TRAIN, delta=0.1, gamma=0.5)
    assert flat.extra["regime"] == "Cd = 1" and flat.inputs["M"] == pytest.approx(2.0)
    _, z, _, value = _garg_by_hand(2, 3, 5, 1 / 3, 1, 2, 2, 0.5, 0.1)
    assert flat.inputs["Z"] == pytest.approx(z, rel=1e-6)
    assert flat.value == pytest.approx(value, rel=1e-5)


def test_garg_rejects_bad_models_and_inputs():
    from torch_geometric.nn import GINConv

    class NoGraph(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = torch.nn.Linear(2, 2)

    with pytest.raises(ValueError, match="at least one message-passing layer"):
        M.garg_rademacher(NoGraph(), TRAIN)

    class Gin(torch.nn.Module):
        def __init__(self):
            super().__init__()
            mlp = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
            self.a, self.b = GINConv(mlp), GINConv(torch.nn.Linear(2, 2))

    with pytest.raises(ValueError, match="between message-passing layers"):
        M.garg_rademacher(Gin(), TRAIN)
    with pytest.raises(ValueError, match="gamma must be"):
        M.garg_rademacher(tiny_gcn(), TRAIN, gamma=-1)
    with pytest.raises(ValueError, match="delta must be"):
        M.garg_rademacher(tiny_gcn(), TRAIN, delta=1)
    with pytest.raises(ValueError, match="activation_lipschitz"):
        M.garg_rademacher(tiny_gcn(), TRAIN, activation_lipschitz=0)
    with pytest.raises(ValueError, match="empty dataset"):
        M.garg_rademacher(tiny_gcn(), [])
    small = tiny_gcn()
    with torch.no_grad():
        small.convs[0].lin.weight.mul_(1e-3)
        small.readout.weight.mul_(1e-3)
    with pytest.raises(ValueError, match="log argument Q"):
        M.garg_rademacher(small, TRAIN)


def test_aminian_by_hand():
    bound = M.aminian_mean_field(tiny_gcn(), TRAIN, delta=0.1, alpha=10.0)
    # W_1 = diag(2, 1): row norms 2, 1 -> w_1 = 2.  Readout diag(1, 3): w = W[1] - W[0]
    # = (-1, 3) -> w_max = 3.  h = 2, B = 5, path graph P3: d_max = 2, d_min = 1, m = 2.
    m_phi = 2 * 3 * 5 * math.sqrt(3) * 2  # h w_max B sqrt(d_max + 1) w_1 (ReLU: no cap)
    m_loss = math.log1p(math.exp(m_phi))
    expected = 4 * m_phi * math.sqrt(m_phi * 10 / 2) + 3 * m_loss * math.sqrt(math.log(20) / 4)
    assert bound.value == pytest.approx(expected, rel=1e-9)
    # ||A_hat||_F^2 of P3 = 1/2 + 1/3 + 1/2 (self loops) + 4 * 1/(2*3) (edges) = 2;
    # G = min(sqrt(3/2), sqrt(2)) = sqrt(3/2).  Functional version: alpha (h w_max B w_1)^2 G^2/m.
    assert bound.inputs["G"] == pytest.approx(math.sqrt(1.5))
    assert bound.extra["expected_gap_bound"] == pytest.approx(10 * 60.0**2 * 1.5 / 2)


def test_aminian_tanh_cap_and_single_output():
    model = tiny_gcn()
    model.readout = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.readout.weight.copy_(torch.tensor([[0.5, -2.0]]))  # w_max = 2
    bound = M.aminian_mean_field(model, TRAIN, delta=0.05, alpha=100.0, activation="tanh")
    m_phi = 2 * 2 * 1.0  # h w_max min(B sqrt(3) w_1, 1)
    expected = 4 * m_phi * math.sqrt(m_phi * 100 / 2) + 3 * math.log1p(math.exp(m_phi)) * math.sqrt(
        math.log(40) / 4
    )
    assert bound.value == pytest.approx(expected, rel=1e-9)
    assert bound.extra["expected_gap_bound"] == pytest.approx(100 * 4.0**2 * 1.5 / 2)


@pytest.mark.parametrize("bound_fn", [M.garg_rademacher, M.aminian_mean_field])
def test_new_bounds_monotone_finite_positive(bound_fn):
    base = bound_fn(tiny_gcn(), TRAIN).value
    assert math.isfinite(base) and base > 0
    assert bound_fn(scaled(tiny_gcn(), 2.0), TRAIN).value > base  # larger readout norm
    assert bound_fn(tiny_gcn(), TRAIN * 4).value < base  # more samples
    assert bound_fn(tiny_gcn(), TRAIN, delta=0.01).value > bound_fn(tiny_gcn(), TRAIN).value


def test_garg_monotone_in_depth_and_margin():
    assert (
        M.garg_rademacher(tiny_gcn(), TRAIN, gamma=0.5).value
        > M.garg_rademacher(tiny_gcn(), TRAIN, gamma=1.0).value
    )
    shallow, deep = M.GCN(2, 4, 2, depth=1), M.GCN(2, 4, 2, depth=3)
    with torch.no_grad():
        for model in (shallow, deep):
            for p in model.parameters():
                p.copy_(torch.eye(*p.shape) * 2.0) if p.dim() == 2 else p.zero_()
    assert M.garg_rademacher(deep, TRAIN).value > M.garg_rademacher(shallow, TRAIN).value


def test_aminian_monotone_in_alpha_and_rejects_bad_inputs():
    low = M.aminian_mean_field(tiny_gcn(), TRAIN, alpha=1.0).value
    assert M.aminian_mean_field(tiny_gcn(), TRAIN, alpha=4.0).value > low
    with pytest.raises(ValueError, match="one GCNConv layer"):
        M.aminian_mean_field(M.GCN(2, 2, 2, depth=2), TRAIN)
    with pytest.raises(ValueError, match="binary readout"):
        M.aminian_mean_field(M.GCN(2, 2, 3, depth=1), TRAIN)
    with pytest.raises(ValueError, match="alpha must be"):
        M.aminian_mean_field(tiny_gcn(), TRAIN, alpha=0)
    with pytest.raises(ValueError, match="activation must be"):
        M.aminian_mean_field(tiny_gcn(), TRAIN, activation="sigmoid")
    with pytest.raises(ValueError, match="delta must be"):
        M.aminian_mean_field(tiny_gcn(), TRAIN, delta=0)
    with pytest.raises(ValueError, match="empty dataset"):
        M.aminian_mean_field(tiny_gcn(), [])


def test_every_bound_records_its_provenance():
    made = [
        fn(tiny_gcn(), TRAIN)
        for fn in (
            M.vc_wl,
            M.garg_rademacher,
            M.liao_gcn_pac_bayes,
            M.ju_pac_bayes,
            M.compositional_pac_bayes,
            M.aminian_mean_field,
        )
    ]
    made.append(M.liao_mpgnn_pac_bayes(tiny_mpgnn(), TRAIN))
    made.append(M.unseen_colour_fraction(TRAIN, TRAIN, rounds=1))
    statuses = ("verified", "partly verified", "reconstructed", "not re-checked", "diagnostic")
    for bound in made:
        assert bound.provenance == M.bounds.PROVENANCE[bound.name]
        assert bound.provenance.startswith(statuses), bound.name
    assert M.bounds.PROVENANCE["garg_rademacher"].startswith("reconstructed")
    assert M.bounds.PROVENANCE["liao_gcn_pac_bayes"].startswith("verified")
    other = M.Bound("custom", 1.0, {}, (), "mine")
    assert other.provenance.startswith("not recorded")
