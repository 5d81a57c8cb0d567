"""cluster/: launcher YAMLs against Ray's schema, versions against the pins, every distst
command line against distst's config validation (cluster/check.py), the runtime environment."""

import importlib.util
import shutil
from pathlib import Path

import pytest

KIT = Path(__file__).resolve().parents[1] / "cluster"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"kit_{name}", KIT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def kit_copy(tmp_path):
    dest = tmp_path / "cluster"
    shutil.copytree(KIT, dest)
    return dest


def test_the_kit_as_shipped_passes_every_check():
    check = _load("check")
    assert check.check() == []
    files = {p.name: p for p in [KIT / "aws.yaml", KIT / "gcp.yaml", KIT / "slurm.sbatch",
                                 KIT / "kuberay" / "rayjob-train.yaml",
                                 KIT / "kuberay" / "rayjob-sweep.yaml"]}
    # the command lines are found (a check that finds none would pass anything)
    found = {name: check.distst_commands(p.read_text(), is_yaml=p.suffix == ".yaml")
             for name, p in files.items()}
    assert all(found.values()), found
    assert found["rayjob-sweep.yaml"][0][0] == "tune"
    assert "runtime.use_gpu=true" in found["rayjob-train.yaml"][0]


@pytest.mark.parametrize("file,old,new,expect", [
    # a mistyped key of Ray's launcher schema
    ("aws.yaml", "max_workers: 8\nupscaling_speed", "max_worker: 8\nupscaling_speed",
     "'max_worker' was unexpected"),
    ("gcp.yaml", "head_node_type: head_cpu", "head_node_type: head_gpu",
     "head_node_type"),
    # another Ray version than the one distst pins
    ("Dockerfile", "rayproject/ray:2.60.0-py311-gpu", "rayproject/ray:2.59.0-py311-gpu",
     "rayproject/ray:2.59.0-py311-gpu is not Ray 2.60.0"),
    ("kuberay/raycluster.yaml", 'rayVersion: "2.60.0"', 'rayVersion: "2.53.0"',
     "rayVersion 2.53.0 is not Ray 2.60.0"),
    # a distst command that distst itself would refuse
    ("kuberay/rayjob-train.yaml", "--set runtime.max_failures=3", "--set runtime.max_failure=3",
     "runtime.max_failure"),
    ("slurm.sbatch", "--set runtime.max_failures=3", "--set runtime.max_failures=-1",
     "runtime.max_failures' must be >= 0"),
    ("submit.sh", 'exec ray job submit --address "$addr" --working-dir',
     'exec ray job submit --address "$addr" )) --working-dir', "bash -n"),
])
def test_each_broken_file_is_one_line_naming_it(kit_copy, file, old, new, expect):
    path = kit_copy / file
    text = path.read_text()
    assert old in text, (file, old)
    path.write_text(text.replace(old, new, 1))
    problems = _load("check").check(kit_copy)
    assert len(problems) == 1, problems
    assert problems[0].startswith(str(path)) and expect in problems[0], problems
    assert "\n" not in problems[0]


def test_runtime_env_installs_the_dependencies_and_uploads_the_package():
    from ray._private.runtime_env.packaging import _get_excludes

    env = _load("runtime_env").runtime_env()
    assert env["working_dir"] == str(KIT.parent)
    assert "torch-geometric>=2.5" in env["pip"] and "pymetis>=2023.1" in env["pip"]
    assert not [d for d in env["pip"] if d.startswith("ray")]  # the cluster's own Ray stays
    excluded = _get_excludes(KIT.parent, env["excludes"])
    root = KIT.parent
    for kept in ("distst/data/network.py", "distst/storage.py", "configs/quickstart.yaml"):
        assert not excluded(root / kept), kept
    for dropped in ("data/pems04/values.npy", "runs/r1/metrics.jsonl", ".venv/bin/python"):
        assert excluded(root / dropped), dropped
