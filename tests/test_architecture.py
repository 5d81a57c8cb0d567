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


@pytest.mark.parametrize("sub", ["config", "layout", "data", "graph", "storage", "typecheck",
                                 "errors"])
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


def test_only_the_service_imports_ray_serve():
    serve = {p: m for sub in ("config", "data", "graph", "nn", "engine", "runtime", "sweep",
                              "scale", "metrics", "storage", "cli")
             for p, m in _bad(sub, ("ray.serve",)).items()}
    assert serve == {}
    # its request formats know nothing of Ray
    assert _bad("serve/windows", ("ray",)) == {}


#: torch.distributed calls that talk to other workers (or make groups to talk on)
COLLECTIVES = {"all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor",
               "all_to_all", "all_to_all_single", "broadcast", "broadcast_object_list",
               "barrier", "reduce", "reduce_scatter", "reduce_scatter_tensor", "gather",
               "gather_object", "scatter", "send", "recv", "isend", "irecv", "new_group",
               "DistributedDataParallel"}


def test_every_collective_goes_through_engine_collectives():
    """One module knows each group's device (distst.engine.collectives); a collective called
    anywhere else could hand a CPU tensor to an NCCL group."""
    found = {}
    for path in sorted(PKG.rglob("*.py")):
        if path == PKG / "engine" / "collectives.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
                base = f.value if isinstance(f, ast.Attribute) else None
                via = getattr(base, "id", "") if base is not None else ""
                # dist.x(...), torch.distributed.x(...), DistributedDataParallel(...)
                if name in COLLECTIVES and (via in ("dist", "distributed") or
                                            name == "DistributedDataParallel" or
                                            isinstance(base, ast.Attribute)
                                            and base.attr == "distributed"):
                    found.setdefault(str(path.relative_to(PKG.parent)), []).append(
                        f"{name} (line {node.lineno})")
    assert found == {}


def test_models_have_no_word_of_parallel_modes():
    """Strategies are applied from outside the model (distst.engine.parallelize): nn/ names
    graph operators, boundaries and per-node parameters, never a mode."""
    import re

    word = re.compile(r"\b(exchange|shard|sharded|replicate|runtime\.mode)\b", re.I)
    found = {}
    for path in _modules("nn"):
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if word.search(line):
                found.setdefault(str(path.relative_to(PKG.parent)), []).append(i)
    assert found == {}
