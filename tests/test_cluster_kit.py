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
    ("submit.sh", 'exec "$ray" job submit --address "$addr" --runtime-env-json',
     'exec "$ray" job submit --address "$addr" )) --runtime-env-json', "bash -n"),
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
    # the sweep key dying with the RayJob, or refused as group-readable; MLflow credentials
    # that only a submitter could send
    ("kuberay/rayjob-sweep.yaml",
     "                - {name: sweep-key, mountPath: /etc/distst/sweep-key, readOnly: true}\n",
     "", "RayJob distst-sweep: the sweep's signing key is made in the head pod's home"),
    ("kuberay/rayjob-sweep.yaml", "install -D -m 600 /etc/distst/sweep-key/sweep.key",
     "cp /etc/distst/sweep-key/sweep.key", "does not copy the key from /etc/distst/sweep-key"),
    ("kuberay/raycluster.yaml", "{name: distst-mlflow, optional: true}",
     "{name: mlflow, optional: true}", "RayCluster distst: the head container reads no MLflow"),
    # an image whose pip may move Ray's packages, or without the tensorboard command
    ("Dockerfile", "RUN pip list --format=freeze > /home/ray/image-constraints.txt\n", "",
     "no constraints from the base image before the first pip install"),
    ("Dockerfile", 'pip install --no-cache-dir -c /home/ray/image-constraints.txt "torch',
     'pip install --no-cache-dir "torch', "pip install without -c /home/ray/image-constraints"),
    ("Dockerfile", "distst[mlflow,tensorboard]", "distst[mlflow]",
     "distst is installed without the extras ['tensorboard']"),
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

    assert "pip" not in _load("runtime_env").runtime_env()  # only with --install
    env = _load("runtime_env").runtime_env(install=True)
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


def test_a_job_gets_the_submitters_mlflow_settings_but_never_its_credentials(tmp_path):
    """cluster/submit.sh as run: its `ray job submit` (a stand-in that records its argv) gets
    the tracking URI and experiment in the job's runtime environment; the password, the token
    and a URI with user:password@ stay behind, each named on stderr (issue 32)."""
    import json
    import os
    import subprocess
    import sys

    venv = tmp_path / "venv" / "bin"
    venv.mkdir(parents=True)
    (venv / "python").symlink_to(sys.executable)
    argv_file = tmp_path / "argv.json"
    (venv / "ray").write_text(f"#!{sys.executable}\nimport json, sys\n"
                              f"json.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n")
    (venv / "ray").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # not this session's
    env.update(DISTST_VENV=str(venv.parent), RAY_ADDRESS="http://127.0.0.1:1",
               MLFLOW_TRACKING_URI="http://mlflow.internal:5000",
               MLFLOW_EXPERIMENT_NAME="pems", MLFLOW_TRACKING_PASSWORD="hunter2-secret",
               MLFLOW_TRACKING_TOKEN="tok-secret",
               MLFLOW_REGISTRY_URI="https://alice:pw-secret@mlflow.internal")
    res = subprocess.run(["bash", str(KIT / "submit.sh"), "--", "python", "-m", "distst",
                          "train", "configs/quickstart.yaml"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    argv = json.loads(argv_file.read_text())
    assert argv[:4] == ["job", "submit", "--address", "http://127.0.0.1:1"]
    assert argv[argv.index("--") + 1:] == ["python", "-m", "distst", "train",
                                           "configs/quickstart.yaml"]
    runtime = json.loads(argv[argv.index("--runtime-env-json") + 1])
    assert runtime["working_dir"] == str(KIT.parent) and "pip" not in runtime
    assert runtime["env_vars"] == {"MLFLOW_EXPERIMENT_NAME": "pems",
                                   "MLFLOW_TRACKING_URI": "http://mlflow.internal:5000"}
    assert "secret" not in json.dumps(argv)
    withheld = [ln for ln in res.stderr.splitlines() if "not sent to the job" in ln]
    assert [ln.split(": ")[2] for ln in withheld] == [
        "MLFLOW_REGISTRY_URI", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"]
    assert "secret" not in res.stderr
