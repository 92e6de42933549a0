"""The distribution names, listed so that renaming a package is a deliberate act.

Each name was checked free on the public index (``pip download --no-deps NAME`` found nothing)
when it was chosen. ``faro`` and ``psm`` belong to unrelated projects there (an SQL library, a
package-source manager), and an installer that sees both indexes takes the highest version of a
name from either, so those two distributions are published as ``faro-fairness-rm`` and
``psm-prefix-scan``; their import names and console scripts stay ``faro`` and ``psm``.
"""

from _workspace import members, normalized

# path under the repository -> (distribution name, import name, console script)
CHOSEN = {
    "shared/kernelkit": ("kernelkit", "kernelkit", "kernelkit"),
    "packages/csrv2": ("csrv2", "csrv2", "csrv2"),
    "packages/densenet-limits": ("densenet-limits", "densenet_limits", "densenet-limits"),
    "packages/faro": ("faro-fairness-rm", "faro", "faro"),
    "packages/g1": ("g1", "g1", "g1"),
    "packages/mpnn-gen": ("mpnn-gen", "mpnn_gen", "mpnn-gen"),
    "packages/pjax-torch": ("pjax-torch", "pjax_torch", "pjax-torch"),
    "packages/psm": ("psm-prefix-scan", "psm", "psm"),
    "packages/reasoncache": ("reasoncache", "reasoncache", "reasoncache"),
    "packages/semola": ("semola", "semola", "semola"),
    "packages/seqtopk": ("seqtopk", "seqtopk", "seqtopk"),
}
TAKEN_ON_THE_PUBLIC_INDEX = {"faro", "psm"}


def test_distribution_names_are_the_chosen_ones():
    from _workspace import ROOT

    found = {
        m.path.relative_to(ROOT).as_posix(): (m.dist_name, m.import_name, m.cli_name)
        for m in members()
    }
    assert found == CHOSEN


def test_no_distribution_uses_a_taken_name():
    names = {normalized(m.dist_name) for m in members()}
    assert not names & {normalized(n) for n in TAKEN_ON_THE_PUBLIC_INDEX}


def test_console_scripts_are_the_import_names():
    for m in members():
        scripts = m.metadata()["project"]["scripts"]
        assert list(scripts) == [m.cli_name], (m.dist_name, scripts)
        assert scripts[m.cli_name].startswith(f"{m.import_name}.cli:")
