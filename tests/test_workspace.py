"""Every workspace member is a complete, publishable package that follows the dependency rule."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
from _workspace import ROOT, Member, members

MEMBERS = members()
IMPORT_NAMES = {m.import_name for m in MEMBERS}
# kernelkit's hard dependencies; anything else it uses must be imported inside a function.
KERNELKIT_TOP_LEVEL = {"torch", "numpy", "safetensors", "tqdm", "kernelkit"}
# Where an import name differs from the distribution that provides it and the installed
# metadata cannot tell us (namespace packages, or several distributions sharing a name).
IMPORT_TO_DIST = {"torch_geometric": "torch-geometric", "sklearn": "scikit-learn", "yaml": "pyyaml"}


def by_id(m: Member) -> str:
    return m.dist_name


def source_files(m: Member) -> list[Path]:
    return sorted((m.path / "src" / m.import_name).rglob("*.py"))


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Top-level module names imported by a file (absolute imports only)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    if top_level_only:  # include module-level `try:` / `if` blocks, not function bodies
        nodes = [
            n
            for stmt in tree.body
            for n in ast.walk(stmt)
            if not isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        ]
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def requirement_names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def declared_distributions(m: Member) -> set[str]:
    project = m.metadata()["project"]
    declared = requirement_names(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        declared |= requirement_names(extra)
    return declared


def distributions_for(module: str) -> set[str]:
    if module in IMPORT_TO_DIST:
        return {IMPORT_TO_DIST[module]}
    return {
        d.lower().replace("_", "-")
        for d in importlib.metadata.packages_distributions().get(module, [])
    }


def test_workspace_has_kernelkit_first():
    assert MEMBERS and MEMBERS[0].dist_name == "kernelkit"


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_member_metadata(m: Member):
    project = m.metadata()["project"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), (
        f"{m.dist_name}: version {project['version']!r} is not SemVer"
    )
    assert project.get("description"), f"{m.dist_name} has no description"
    assert project.get("license"), f"{m.dist_name} declares no license"
    assert (m.path / "LICENSE").is_file(), f"{m.dist_name} has no LICENSE file"
    assert "3.11" in project["requires-python"] or project["requires-python"] in (
        ">=3.10",
        ">=3.11",
    )
    readme = (m.path / "README.md").read_text(encoding="utf-8")
    assert len(readme) > 500 and readme.startswith("# "), (
        f"{m.dist_name}: README.md is missing or a placeholder"
    )
    changelog = (m.path / "CHANGELOG.md").read_text(encoding="utf-8")
    assert "## [Unreleased]" in changelog
    assert f"## [{project['version']}]" in changelog, (
        f"{m.dist_name}: CHANGELOG.md has no entry for {project['version']}"
    )
    assert (m.path / "tests").is_dir() and list((m.path / "tests").glob("test_*.py")), (
        f"{m.dist_name} has no tests"
    )


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_console_script_named_after_package(m: Member):
    scripts = m.metadata()["project"].get("scripts", {})
    assert m.cli_name in scripts, f"{m.dist_name} promises a console script named {m.cli_name}"
    module_name, func_name = scripts[m.cli_name].split(":")
    assert callable(getattr(importlib.import_module(module_name), func_name))


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_public_api_is_declared(m: Member):
    package = importlib.import_module(m.import_name)
    assert package.__version__ == m.version
    missing = [name for name in getattr(package, "__all__", []) if not hasattr(package, name)]
    assert hasattr(package, "__all__") and not missing, (
        f"{m.import_name}.__all__ names missing objects {missing}"
    )


def test_every_member_is_in_the_dev_group():
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dev = requirement_names(root["dependency-groups"]["dev"])
    missing = [m.dist_name for m in MEMBERS if m.dist_name not in dev]
    assert not missing, f"add {missing} to the root dev group so `uv run pytest` installs them"


def test_readme_lists_every_package():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for m in MEMBERS:
        assert f"`{m.dist_name}`" in readme, f"README.md's package table lacks {m.dist_name}"
    assert "uv run pytest" in readme and "uv run tools/repro.py" in readme


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_no_sibling_imports(m: Member):
    siblings = IMPORT_NAMES - {m.import_name, "kernelkit"}
    if m.dist_name == "kernelkit":
        siblings = IMPORT_NAMES - {"kernelkit"}
    offenders = {
        f"{p.relative_to(ROOT)} imports {sorted(imports(p) & siblings)}"
        for p in source_files(m)
        if imports(p) & siblings
    }
    assert not offenders, "packages depend on kernelkit and third parties only: " + "; ".join(
        sorted(offenders)
    )


def test_kernelkit_imports_heavy_libraries_lazily():
    kernelkit = next(m for m in MEMBERS if m.dist_name == "kernelkit")
    stdlib = set(sys.stdlib_module_names)
    for path in source_files(kernelkit):
        eager = imports(path, top_level_only=True) - stdlib - KERNELKIT_TOP_LEVEL
        if path.name.startswith("_triton_"):
            # Kernel modules need triton at definition time; they are themselves imported lazily.
            eager -= {"triton"}
        assert not eager, (
            f"{path.relative_to(ROOT)} imports {sorted(eager)} at module level; import them inside the function"
        )
        text = path.read_text(encoding="utf-8")
        eager_kernels = [
            line
            for line in text.splitlines()
            if re.match(
                r"(from|import) kernelkit\._triton_|from \. import _triton_|from \._triton_", line
            )
        ]
        assert not eager_kernels, (
            f"{path.relative_to(ROOT)} imports a Triton kernel module at module level: {eager_kernels}"
        )


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_third_party_imports_are_declared(m: Member):
    stdlib = set(sys.stdlib_module_names)
    declared = declared_distributions(m)
    undeclared = set()
    for path in source_files(m):
        for module in imports(path) - stdlib - {m.import_name}:
            if module.startswith("_"):
                continue
            if module == "kernelkit" and "kernelkit" in declared:
                continue
            providers = distributions_for(module)
            if not providers & declared:
                undeclared.add(f"{module} (in {path.name})")
    assert not undeclared, f"{m.dist_name} imports undeclared packages: {sorted(undeclared)}"


@pytest.mark.slow
@pytest.mark.parametrize("m", members(), ids=lambda m: m.dist_name)
def test_python_dash_m_runs_the_cli(m: Member):
    """``python -m <pkg> --help`` runs the console script's parser (``<pkg>/__main__.py``),
    which offers ``--version`` and ``--debug`` (kernelkit.cli.run's one-line user errors)."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", m.import_name, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:"), result.stdout
    assert "--version" in result.stdout and "--debug" in result.stdout, result.stdout


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_every_cli_module_runs_as_a_script(m: Member):
    """``python -m <pkg>.cli`` (what ``accelerate launch -m`` and ``torchrun -m`` run) calls
    ``main``: the module ends in an ``if __name__ == "__main__": sys.exit(main())`` guard."""
    tree = ast.parse((m.path / "src" / m.import_name / "cli.py").read_text(encoding="utf-8"))
    guards = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "__name__ == '__main__'"
    ]
    assert len(guards) == 1 and ast.unparse(guards[0].body[0]) == "sys.exit(main())"


@pytest.mark.parametrize("m", MEMBERS, ids=by_id)
def test_every_cli_prints_its_version(m: Member, capsys):
    cli = importlib.import_module(f"{m.import_name}.cli")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    version = importlib.import_module(m.import_name).__version__
    scripts = m.metadata()["project"]["scripts"]
    (command,) = [name for name, target in scripts.items() if target == f"{m.import_name}.cli:main"]
    assert capsys.readouterr().out.split() == [command, version]


@pytest.mark.slow
@pytest.mark.parametrize("module", ["faro.cli", "mpnn_gen.cli", "reasoncache.cli"])
def test_cli_modules_run_under_python_dash_m(module):
    """These three ``cli`` modules had no ``__main__`` guard: ``python -m faro.cli train ...``
    (and so ``accelerate launch -m faro.cli``) exited 0 having done nothing."""
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", module, "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip(), (result.stdout, result.stderr)
