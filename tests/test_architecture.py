"""The import rules of the README's Architecture section, checked on every module's source."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "distst"


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _modules(sub: str) -> list[Path]:
    root = PKG / sub
    return sorted(root.rglob("*.py")) if root.is_dir() else [PKG / f"{sub}.py"]


def _bad(sub: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in _modules(sub):
        hits = sorted(m for m in _imports(path)
                      if any(m == f or m.startswith(f + ".") for f in forbidden))
        if hits:
            found[str(path.relative_to(PKG.parent))] = hits
    return found


MODEL_SIDE = ("distst.nn", "distst.engine", "distst.runtime", "distst.sweep", "distst.scale",
              "distst.cli",
              "ray", "torch_geometric")


@pytest.mark.parametrize("sub", ["config", "data", "graph", "storage", "typecheck", "errors"])
def test_config_data_and_graph_know_nothing_of_models_engine_or_ray(sub):
    assert _bad(sub, MODEL_SIDE) == {}


def test_nn_knows_torch_and_pyg_only():
    allowed = ("distst.nn", "distst.errors", "distst.typecheck")
    found = {}
    for path in _modules("nn"):
        hits = sorted(m for m in _imports(path) if m.startswith("distst")
                      and not any(m == a or m.startswith(a + ".") for a in allowed))
        hits += sorted(m for m in _imports(path) if m == "ray" or m.startswith("ray."))
        if hits:
            found[str(path.relative_to(PKG.parent))] = hits
    assert found == {}


def test_models_import_layers_not_other_models_private_names():
    found = {}
    for path in _modules("nn"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("distst.nn"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                if private:
                    found.setdefault(str(path.relative_to(PKG.parent)), []).extend(private)
    assert found == {}


def test_engine_runs_without_ray():
    assert _bad("engine", ("ray", "distst.runtime", "distst.sweep", "distst.scale",
                           "distst.cli")) == {}


def test_only_runtime_imports_ray_train_and_only_sweep_imports_ray_tune():
    train = {p: m for sub in ("config", "data", "graph", "nn", "engine", "sweep", "scale",
                              "metrics", "storage", "cli")
             for p, m in _bad(sub, ("ray.train",)).items()}
    # the sweep hands Train's reports to Tune through Tune's own integration module
    train = {p: [m for m in ms if not m.startswith("ray.tune")] for p, ms in train.items()}
    assert {p: m for p, m in train.items() if m} == {}
    tune = {p: m for sub in ("config", "data", "graph", "nn", "engine", "runtime", "scale",
                             "metrics", "storage", "cli")
            for p, m in _bad(sub, ("ray.tune",)).items()}
    assert tune == {}
