"""cluster/: launcher YAMLs against Ray's schema, versions against the pins, every distst
command line against distst's config validation (cluster/check.py), the runtime environment."""

import importlib.util
import re
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
    ("submit.sh", 'exec "$ray" job submit --address "$addr" --working-dir',
     'exec "$ray" job submit --address "$addr" )) --working-dir', "bash -n"),
    # issue 32: a GPU node type the autoscaler cannot plan for (GCP detects TPUs only)
    ("gcp.yaml", 'resources: {"CPU": 8, "GPU": 1}', "resources: {}",
     "a GPU node type (g2-standard-8) declares {}"),
    ("aws.yaml", 'resources: {"CPU": 4, "GPU": 1}', 'resources: {"CPU": 4}',
     "a GPU node type (g5.xlarge)"),
    # an AWS head whose own profile cannot launch workers
    ("aws-head-policy.json", '"iam:PassRole"', '"iam:GetRole"', "lacks iam:PassRole"),
    # an example that plans on the head's disk, or keeps its runs there
    ("aws.yaml", "\\\n#       --set partition.plan=s3://BUCKET/plans/pems-l-p2", "",
     "makes its plan on the fly in data.cache_dir=~/.cache/distst"),
    ("kuberay/raycluster.yaml", " --set runtime.storage=/mnt/distst/runs", "",
     "the run would go to runtime.storage=runs"),
    ("Dockerfile.dockerignore", ".venv\n", "", "the whole virtual environment"),
    # clusters without token auth
    ("gcp.yaml", "RAY_AUTH_MODE=token ray start --address", "ray start --address",
     "start Ray with RAY_AUTH_MODE=token on every node"),
    ("aws.yaml", '"~/.ray/auth_token": "~/.ray/auth_token"', '"~/x": "~/x"',
     "the nodes need the submitter's token"),
    ("kuberay/rayjob-sweep.yaml", "authOptions: {mode: token, secretName: distst-ray-token}",
     "authOptions: {mode: disabled}", "RayJob distst-sweep: no authOptions {mode: token}"),
    # pods on the shared volume without the ray user's group, or without the cloud role
    ("kuberay/shell.yaml", "  securityContext: {fsGroup: 100}\n", "",
     "pod of container shell: no securityContext.fsGroup"),
    ("kuberay/rayjob-train.yaml", "serviceAccountName: distst ", "serviceAccountName: default ",
     "pod of container ray-head: serviceAccountName is 'default'"),
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
    # the image's torch on every node, never whatever is newest (issue 32)
    assert [d for d in env["pip"] if d.startswith("torch") and "geometric" not in d] == [
        "torch==2.13.0"]
    assert not [d for d in env["pip"] if d.startswith("ray")]  # the cluster's own Ray stays
    excluded = _get_excludes(KIT.parent, env["excludes"])
    root = KIT.parent
    for kept in ("distst/data/network.py", "distst/storage.py", "configs/quickstart.yaml"):
        assert not excluded(root / kept), kept
    for dropped in ("data/pems04/values.npy", "runs/r1/metrics.jsonl", ".venv/bin/python"):
        assert excluded(root / dropped), dropped


#: a `ray stop` command: outside a comment in a shell script or YAML file, as a string that
#: starts a command in Python, or as argv (`[ray, "stop", ...]`); prose in docstrings and
#: comments does not count
_RAY_STOP = {
    "shell": re.compile(r"\bray\s+stop\b"),
    "python": re.compile(r"""ray\w*["']?\s*,\s*["']stop["']|["'](?:\S*/)?ray\s+stop\b"""),
}


def _ray_stop_commands(root: Path) -> list[str]:
    found = []
    for sub in ("tests", "scripts", "cluster"):
        for path in sorted((root / sub).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts or path == Path(__file__).resolve():
                continue  # this file holds the check's own examples
            kind = "python" if path.suffix == ".py" else "shell"
            rows = path.read_text(errors="replace").splitlines()
            in_launcher_start = False
            for n, row in enumerate(rows, 1):
                code = row.split("#", 1)[0]
                if path.suffix in (".yaml", ".yml") and not row.startswith((" ", "-")):
                    in_launcher_start = row.rstrip().endswith("_start_ray_commands:")
                # the cluster launcher runs these on machines it created for this cluster
                # alone, where the only Ray is the one they started before (`ray up`)
                if in_launcher_start:
                    continue
                if _RAY_STOP[kind].search(code):
                    found.append(f"{path.relative_to(root)}:{n}: {row.strip()}")
    return found


def test_nothing_runs_ray_stop_on_a_ray_it_did_not_start():
    """`ray stop` stops every Ray of the user on the machine (a running study included):
    tests, scripts and the kit stop only the processes they started."""
    assert _ray_stop_commands(KIT.parent) == []


@pytest.mark.parametrize("name, text", [
    ("t.py", 'subprocess.run([ray, "stop", "--force"])'),
    ("t.py", 'os.system("ray stop")'),
    ("t.sh", "trap 'ray stop --force' EXIT"),
    ("t.sh", "srun --overlap ray stop --force || true"),
    ("t.yaml", "cleanup:\n  - ray stop"),
])
def test_the_ray_stop_check_finds_each_form(tmp_path, name, text):
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / name).write_text("# ray stop in a comment is prose\n" + text + "\n")
    for sub in ("tests", "cluster"):
        (tmp_path / sub).mkdir()
    assert len(_ray_stop_commands(tmp_path)) == 1
