from mpnn_gen.cli import main


def test_shatter_and_wl_subcommands(capsys):
    assert main(["shatter", "--min-order", "9", "--max-order", "9"]) == 0
    assert "order 9: 4 trees, 4 1-WL classes" in capsys.readouterr().out
    assert main(["wl", "--dataset", "csl", "--rounds", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2\t1\t1"
    assert main(["wl", "--dataset", "fake", "--rounds", "1"]) == 0
    # 100 FakeDataset graphs (structure only): one round of degrees separates all of them.
    assert capsys.readouterr().out.splitlines()[-1].split("\t")[2] == "100"


def test_er_densities_degree_features_and_models():
    import mpnn_gen as M
    import torch
    from mpnn_gen.data import er_densities, liao_synthetic

    graphs = er_densities(6, nodes=10, densities=(0.1, 0.5), features=8, seed=3)
    assert [int(g.y) for g in graphs] == [0, 1, 0, 1, 0, 1]
    for g in graphs:
        degrees = torch.bincount(g.edge_index[0], minlength=g.num_nodes).clamp(max=7)
        assert torch.equal(g.x.argmax(dim=1), degrees)
        assert torch.allclose(g.x.norm(dim=1), torch.ones(g.num_nodes))
    assert liao_synthetic(2, nodes=10, node_features="degree")[0].x.shape == (10, 16)
    for bad in (lambda: er_densities(2, node_features="x"), lambda: M.GCN(2, 4, 2, 1, pool="max")):
        try:
            bad()
        except ValueError:
            pass
        else:
            raise AssertionError("expected ValueError")
    model = M.MPGNN(8, 8, 2, steps=2, pool="sum")
    config = M.TrainConfig(epochs=500, stop_when_fit=True)
    M.train_graph_classifier(model, graphs, config)
    assert M.measure_gap(model, graphs, graphs).train_error == 0.0


def test_bounds_subcommand_lists_new_bounds(capsys):
    args = ["bounds", "--model", "gcn", "--depth", "1", "--width", "8", "--graphs", "8"]
    assert main([*args, "--nodes", "8", "--epochs", "5"]) == 0
    out = capsys.readouterr().out
    assert "garg_rademacher" in out and "aminian_mean_field" in out
