from mpnn_gen.cli import main


def test_shatter_and_wl_subcommands(capsys):
    assert main(["shatter", "--min-order", "9", "--max-order", "9"]) == 0
    assert "order 9: 4 trees, 4 1-WL classes" in capsys.readouterr().out
    assert main(["wl", "--dataset", "csl", "--rounds", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "2\t1\t1"
