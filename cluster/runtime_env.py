"""Print the Ray runtime environment (JSON) that runs distst on a cluster whose image lacks it.

``ray job submit --runtime-env-json "$(python cluster/runtime_env.py)" -- python -m distst ...``
(what ``cluster/submit.sh`` does): the job uploads this repository as its working directory,
which Ray puts on every worker's ``sys.path`` (so ``import distst`` works on every node), and
Ray installs distst's dependencies per node with pip, from the pins in pyproject.toml. Ray itself
is not installed: the cluster's Ray must already be the pinned version (``ray.init`` refuses a
driver whose Ray differs from the cluster's). Large or private folders (virtualenvs, runs,
caches, data) are not uploaded.
"""

from __future__ import annotations

import json
import re
import sys
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


def runtime_env(root: Path = ROOT) -> dict:
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned_ray(deps)  # refuse a pyproject.toml without the pin the images are built on
    torch = f"torch=={pinned_torch(root)}"
    pip = [torch if re.match(r"torch\s*([<>=!~;\[]|$)", d) else d for d in deps
           if not re.match(r"ray\b", d)]
    return {"working_dir": str(root), "excludes": EXCLUDES, "pip": pip}


if __name__ == "__main__":
    json.dump(runtime_env(), sys.stdout)
    print()
