"""Check the cluster kit against this checkout: ``python cluster/check.py`` (exit 1 and one
line per problem, each naming the file, the key and the fix).

- Ray cluster launcher YAMLs (aws.yaml, gcp.yaml) validate against the schema that ships
  inside the Ray wheel (Ray's own ``validate_config``): a mistyped key fails.
- Every image and Ray version named in the kit (Dockerfile FROM, KubeRay rayVersion, images)
  equals the Ray that distst pins, and distst images carry distst's version.
- Every distst command line in the kit (KubeRay entrypoints, the Slurm script's default
  command) passes distst's own config validation, as ``distst train`` / ``distst tune`` would
  check it before starting anything.
- Shell scripts parse (``bash -n``).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

KIT = Path(__file__).resolve().parent
ROOT = KIT.parent
LAUNCHERS = ("aws.yaml", "gcp.yaml")
SCRIPTS = ("submit.sh", "local-head.sh", "slurm.sbatch")


def _pinned() -> tuple[str, str]:
    import distst
    from runtime_env import pinned_ray  # cluster/runtime_env.py, beside this file

    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return pinned_ray(deps), distst.__version__


def _first_line(e: Exception) -> str:
    return next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)


def check_launcher(path: Path) -> list[str]:
    from ray.autoscaler._private.util import validate_config

    try:
        validate_config(yaml.safe_load(path.read_text()))
    except Exception as e:  # jsonschema.ValidationError, ValueError, RuntimeError
        where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
        return [f"{path}: {('key ' + where + ': ') if where else ''}{_first_line(e)} "
                "(Ray's cluster launcher schema; see ray/autoscaler/ray-schema.json)"]
    return []


def check_images(path: Path, text: str, ray: str, version: str) -> list[str]:
    """Ray images must be the pinned Ray; distst images the checkout's version."""
    out = []
    for m in re.finditer(r"rayproject/ray:(?P<tag>[\w.-]+)", text):
        if not m.group("tag").startswith(ray + "-") and m.group("tag") != ray:
            out.append(f"{path}: image rayproject/ray:{m.group('tag')} is not Ray {ray}, which "
                       f"distst pins (pyproject.toml); use rayproject/ray:{ray}-py311-gpu")
    for m in re.finditer(r"rayVersion:\s*\"?(?P<v>[\w.]+)\"?", text):
        if m.group("v") != ray:
            out.append(f"{path}: rayVersion {m.group('v')} is not Ray {ray}, which distst pins "
                       f"(pyproject.toml); set rayVersion: \"{ray}\"")
    for m in re.finditer(r"distst:(?P<v>\d[\w.]*)", text):
        if m.group("v") != version:
            out.append(f"{path}: image distst:{m.group('v')} is not this checkout's distst "
                       f"{version}; build and push REGISTRY/distst:{version}")
    return out


def _yaml_strings(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for v in node.values() for s in _yaml_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _yaml_strings(v)]
    return []


def distst_commands(text: str, is_yaml: bool = False) -> list[list[str]]:
    """The ``python -m distst train|tune ...`` command lines in a file: in YAML, its string
    values (a folded ``entrypoint: >-`` is one line once parsed) and its comments; elsewhere
    the text, shell continuations joined and shell variables allowed."""
    if is_yaml:
        comments = "\n".join(ln for ln in text.splitlines() if ln.lstrip().startswith("#"))
        text = "\n".join([comments, *(s for doc in yaml.safe_load_all(text)
                                      for s in _yaml_strings(doc))])
    # join shell continuations, also inside comments ("\" then "#   more args")
    flat = re.sub(r"\\\n\s*#?", " ", text)
    cmds = []
    for m in re.finditer(r"python -m distst (?:train|tune)\b[^\n]*", flat):
        line = m.group(0)
        if "\"$@\"" in line or "..." in line:  # the user's own command; a usage synopsis
            continue
        cmds.append(shlex.split(line)[3:])  # after "python -m distst"
    return cmds


def check_command(path: Path, argv: list[str]) -> list[str]:
    from distst.cli import build_parser
    from distst.errors import DiststError

    args = build_parser().parse_args(argv)
    # shell variables stand for site paths: any absolute folder will do for the check
    sets = [re.sub(r"\$\{?\w+\}?", "/tmp/site", s) for s in (args.set or [])]
    try:
        if argv[0] == "train":
            from distst.config import load_config

            load_config(ROOT / args.config, sets)
        else:
            from distst.sweep.config import load_sweep

            load_sweep(ROOT / args.sweep, sets)
    except DiststError as e:
        return [f"{path}: distst {' '.join(argv[:2])}: {e}"]
    return []


def check(kit: Path = KIT) -> list[str]:
    sys.path.insert(0, str(KIT))
    ray, version = _pinned()
    problems = []
    for name in LAUNCHERS:
        problems += check_launcher(kit / name)
    files = [kit / "Dockerfile", *(kit / n for n in LAUNCHERS + SCRIPTS),
             *sorted((kit / "kuberay").glob("*.yaml"))]
    for path in files:
        text = path.read_text()
        problems += check_images(path, text, ray, version)
        for argv in distst_commands(text, is_yaml=path.suffix == ".yaml"):
            problems += check_command(path, argv)
        if path.suffix in (".sh", ".sbatch"):
            res = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
            if res.returncode:
                problems.append(f"{path}: bash -n: {_first_line(Exception(res.stderr))}")
    return problems


if __name__ == "__main__":
    found = check()
    for line in found:
        print(line, file=sys.stderr)
    print(f"cluster kit: {len(found)} problem(s)" if found else "cluster kit: ok")
    sys.exit(1 if found else 0)
