"""Print the Ray runtime environment (JSON) of a distst job: what ``cluster/submit.sh`` sends.

``ray job submit --runtime-env-json "$(python cluster/runtime_env.py [--install])" -- python -m
distst ...``: the job uploads this repository as its working directory, which Ray puts on every
worker's ``sys.path`` (so the job runs this checkout's distst on every node); large or private
folders (virtualenvs, runs, caches, data) are not uploaded.

- The submitter's MLflow settings (``MLFLOW_TRACKING_URI``, ``MLFLOW_EXPERIMENT_NAME``...) go
  to the job's processes, so ``runtime.loggers: [mlflow]`` reaches the same server from the
  cluster. Credentials do not: a runtime environment is stored in the cluster and shown to
  everyone who can list its jobs (``ray job list``, the dashboard), so a variable naming a
  password, token, secret or key, and a tracking URI with ``user:password@``, is withheld
  with one line on stderr; the cluster gets them from its own environment (KubeRay: the
  ``distst-mlflow`` Secret the pods read).
- ``--install`` also has Ray install distst's dependencies per node with pip, from the pins in
  pyproject.toml, for a cluster whose image has Ray but not distst's packages. Ray itself is
  not installed: the cluster's Ray must already be the pinned version (``ray.init`` refuses a
  driver whose Ray differs from the cluster's).
"""

from __future__ import annotations

import json
import os
import re
import sys
from urllib.parse import urlsplit
from pathlib import Path

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
#: never uploaded with the working directory (Ray's limit is 500 MiB, and runs may hold
#: private data). gitignore syntax: a leading "/" anchors at the repository root, so that
#: "/data" leaves the package's distst/data/ in
EXCLUDES = ["/.venv", "/.git", "/runs", "/data", "/plans", "/benchmarks", "*.egg-info",
            "__pycache__", ".pytest_cache", ".ray-token-*"]


def pinned_ray(deps: list[str]) -> str:
    """The Ray version pyproject.toml pins (``ray[...]==X.Y.Z``)."""
    for dep in deps:
        m = re.match(r"ray(\[[^\]]*\])?==([\w.]+)$", dep.replace(" ", ""))
        if m:
            return m.group(2)
    raise SystemExit("pyproject.toml pins no Ray version (expected ray[...]==X.Y.Z)")


def pinned_torch(root: Path = ROOT) -> str:
    """The torch version the image installs (cluster/Dockerfile: ``pip install "torch==X"``):
    the nodes get the same one, never whatever is newest (several GB of CUDA packages)."""
    m = re.search(r"torch==([\w.+]+)", (root / "cluster" / "Dockerfile").read_text())
    if not m:
        raise SystemExit("cluster/Dockerfile pins no torch version (expected torch==X.Y.Z)")
    return m.group(1)


#: environment variables a job takes from its submitter (names starting with these)
FORWARDED = ("MLFLOW_",)
#: ...unless the name says it holds a credential
CREDENTIAL = re.compile(r"PASSWORD|TOKEN|SECRET|KEY|CREDENTIAL|AUTH")


def forwarded_env(environ: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """(the variables the job gets, one line per variable withheld and why)."""
    env, withheld = {}, []
    for name, value in sorted(environ.items()):
        if not name.startswith(FORWARDED):
            continue
        if CREDENTIAL.search(name):
            withheld.append(f"{name}: a credential; a job's runtime environment is shown to "
                            "everyone who can list the cluster's jobs, so give it to the "
                            "cluster instead (KubeRay: the distst-mlflow Secret)")
        elif "@" in (urlsplit(value).netloc if "://" in value else ""):
            withheld.append(f"{name}: its URI carries user:password@; set the server's "
                            "address without them, and the credentials on the cluster")
        else:
            env[name] = value
    return env, withheld


def runtime_env(root: Path = ROOT, install: bool = False,
                environ: dict[str, str] | None = None) -> dict:
    env = {"working_dir": str(root), "excludes": EXCLUDES}
    forwarded, _ = forwarded_env(os.environ if environ is None else environ)
    if forwarded:
        env["env_vars"] = forwarded
    if install:
        deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
        pinned_ray(deps)  # refuse a pyproject.toml without the pin the images are built on
        torch = f"torch=={pinned_torch(root)}"
        env["pip"] = [torch if re.match(r"torch\s*([<>=!~;\[]|$)", d) else d for d in deps
                      if not re.match(r"ray\b", d)]
    return env


if __name__ == "__main__":
    for line in forwarded_env(dict(os.environ))[1]:
        print(f"cluster/runtime_env.py: not sent to the job: {line}", file=sys.stderr)
    json.dump(runtime_env(install="--install" in sys.argv[1:]), sys.stdout)
    print()
