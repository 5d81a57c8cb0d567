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
- The example train commands put the run and its plan where every node reads them: a
  ``runtime.storage`` given, and in shard / exchange mode a ``partition.plan`` made on shared
  storage beforehand or a ``data.cache_dir`` every node mounts (a plan made on the fly lands
  in the head's ``~/.cache/distst``, and the workers fail with "part_0 ... is not on node").
- GPU node types of the launchers declare their GPUs and CPUs in ``resources`` (Ray's GCP
  provider detects TPUs only, so ``resources: {}`` never lets the autoscaler add a GPU node).
- An AWS head with an instance profile of its own (Ray then skips its default role) ships
  the policy that lets it launch workers (``aws-head-policy.json``: EC2 run, terminate,
  describe, tag, and ``iam:PassRole`` for the workers' profile).
- Token auth is on: the launchers start Ray with ``RAY_AUTH_MODE=token`` and mount the
  submitter's token on every node; KubeRay clusters set ``authOptions: {mode: token}``.
- KubeRay pods that mount the shared volume run as the ``distst`` service account (pvc.yaml:
  the cloud role, IRSA / Workload Identity) with ``fsGroup`` set (the image's user is uid 1000).
- KubeRay heads (where a job's driver runs) read MLflow credentials from the ``distst-mlflow``
  Secret (``cluster/submit.sh`` never sends them); a RayJob that sweeps mounts its signing key
  from a Secret, which outlives the job, and its entrypoint copies the key to a mode-600 file
  before ``distst tune`` (a Secret volume under fsGroup is group-readable, which distst refuses).
- The Dockerfile holds every ``pip install`` to the versions the base image ships (a
  constraints file from ``pip list --format=freeze``, so pip cannot move Ray's own
  dependencies) and installs distst with the extras a cluster uses (``mlflow``,
  ``tensorboard``).
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

    conf = yaml.safe_load(path.read_text())
    try:
        validate_config(conf)
    except Exception as e:  # jsonschema.ValidationError, ValueError, RuntimeError
        where = "/".join(str(p) for p in getattr(e, "absolute_path", []))
        return [f"{path}: {('key ' + where + ': ') if where else ''}{_first_line(e)} "
                "(Ray's cluster launcher schema; see ray/autoscaler/ray-schema.json)"]
    return check_gpu_resources(path, conf) + check_head_role(path, conf) + \
        check_launcher_auth(path, conf)


def check_launcher_auth(path: Path, conf: dict) -> list[str]:
    """Token auth on every node: ``ray start --head`` turns it on only when told, and a
    cluster without it runs anything anyone sends to its dashboard."""
    starts = [c for key in ("head_start_ray_commands", "worker_start_ray_commands")
              for c in conf.get(key) or [] if "ray start" in c]
    if not starts or not all("RAY_AUTH_MODE=token" in c for c in starts):
        return [f"{path}: key head_start_ray_commands / worker_start_ray_commands: start Ray "
                "with RAY_AUTH_MODE=token on every node (token auth is off otherwise)"]
    if "~/.ray/auth_token" not in (conf.get("file_mounts") or {}):
        return [f"{path}: key file_mounts: the nodes need the submitter's token: mount "
                "\"~/.ray/auth_token\": \"~/.ray/auth_token\""]
    return []


def _pod_specs(node) -> list[dict]:
    """Every pod spec (a mapping with ``containers``) inside a manifest."""
    if isinstance(node, dict):
        found = [node] if "containers" in node else []
        return found + [p for v in node.values() for p in _pod_specs(v)]
    if isinstance(node, list):
        return [p for v in node for p in _pod_specs(v)]
    return []


def check_kuberay_pods(path: Path, text: str) -> list[str]:
    """Pods that mount the shared volume run as the distst service account (their cloud
    role) with the ray user's group owning what they write."""
    out = []
    for doc in yaml.safe_load_all(text):
        for pod in _pod_specs(doc):
            mounts = {m.get("name") for c in pod["containers"] for m in c.get("volumeMounts", [])}
            if "distst-shared" not in mounts:
                continue
            name = pod["containers"][0].get("name")
            if (pod.get("securityContext") or {}).get("fsGroup") is None:
                out.append(f"{path}: pod of container {name}: no securityContext.fsGroup; the "
                           "image's ray user (uid 1000) may not write the shared volume: set "
                           "securityContext: {fsGroup: 100}")
            if pod.get("serviceAccountName") != "distst":
                out.append(f"{path}: pod of container {name}: serviceAccountName is "
                           f"{pod.get('serviceAccountName')!r}; run it as distst (pvc.yaml), "
                           "whose role reaches the buckets (IRSA / Workload Identity)")
    return out


def _head_pod(doc: dict) -> dict | None:
    spec = doc.get("spec") or {}
    spec = spec.get("rayClusterSpec", spec) if doc.get("kind") == "RayJob" else spec
    return (((spec.get("headGroupSpec") or {}).get("template") or {}).get("spec"))


def check_kuberay_secrets(path: Path, text: str) -> list[str]:
    out = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict) or doc.get("kind") not in ("RayCluster", "RayJob"):
            continue
        where = f"{path}: {doc['kind']} {doc.get('metadata', {}).get('name')}"
        pod = _head_pod(doc) or {"containers": [{}]}
        head = pod["containers"][0]
        if not any((e.get("secretRef") or {}).get("name") == "distst-mlflow"
                   for e in head.get("envFrom") or []):
            out.append(f"{where}: the head container reads no MLflow credentials; add envFrom: "
                       "[{secretRef: {name: distst-mlflow, optional: true}}] (the job's driver "
                       "runs there, and cluster/submit.sh withholds credentials)")
        entry = (doc.get("spec") or {}).get("entrypoint") or ""
        if doc["kind"] != "RayJob" or not re.search(r"python -m distst tune\b", entry):
            continue
        secrets = {v["name"] for v in pod.get("volumes") or [] if "secret" in v}
        mounts = [m["mountPath"] for m in head.get("volumeMounts") or []
                  if m.get("name") in secrets]
        before = entry.split("python -m distst tune")[0]
        if not mounts:
            out.append(f"{where}: the sweep's signing key is made in the head pod's home and "
                       "dies with the RayJob, so no later job can --resume it; mount the "
                       "Secret distst-sweep-key on the head (secret: {secretName: "
                       "distst-sweep-key, defaultMode: 0400})")
        elif not re.search(r"install -D -m 600 (%s)/\S+ \S+ &&" % "|".join(map(re.escape, mounts)),
                           before):
            out.append(f"{where}: the entrypoint does not copy the key from {mounts[0]} to a "
                       "mode-600 file before distst tune (a Secret volume under fsGroup is "
                       "group-readable, and distst refuses such a key); begin it with install "
                       f"-D -m 600 {mounts[0]}/sweep.key $HOME/.config/distst/sweep.key &&")
    return out


def check_kuberay_auth(path: Path, text: str) -> list[str]:
    out = []
    for doc in yaml.safe_load_all(text):
        if not isinstance(doc, dict) or doc.get("kind") not in ("RayCluster", "RayJob"):
            continue
        spec = doc.get("spec") or {}
        spec = spec.get("rayClusterSpec", spec) if doc["kind"] == "RayJob" else spec
        if (spec.get("authOptions") or {}).get("mode") != "token":
            out.append(f"{path}: {doc['kind']} {doc.get('metadata', {}).get('name')}: no "
                       "authOptions {mode: token}: the cluster would run without token auth "
                       "(KubeRay >= 1.5.1 sets RAY_AUTH_MODE and the token on every pod)")
    return out


#: instance types with GPUs: AWS g*/p* families; GCP says so with guestAccelerators or a
#: GPU machine family (a2, a3, g2)
_GPU_TYPE = re.compile(r"^(g\d|p\d|a2-|a3-|g2-)")


def check_gpu_resources(path: Path, conf: dict) -> list[str]:
    out = []
    for name, nt in (conf.get("available_node_types") or {}).items():
        nc = nt.get("node_config") or {}
        kind = str(nc.get("InstanceType") or nc.get("machineType") or "")
        if not (nc.get("guestAccelerators") or _GPU_TYPE.match(kind)):
            continue
        res = nt.get("resources") or {}
        if not (float(res.get("GPU", 0)) > 0 and float(res.get("CPU", 0)) > 0):
            out.append(f"{path}: key available_node_types/{name}/resources: a GPU node type "
                       f"({kind or 'guestAccelerators'}) declares {res}; the autoscaler adds a "
                       "node only for resources it knows it has: set resources: {\"CPU\": "
                       "VCPUS, \"GPU\": GPUS} of the machine type")
    return out


#: what a head with its own instance profile needs to launch and stop workers
HEAD_ACTIONS = ("ec2:RunInstances", "ec2:TerminateInstances", "ec2:DescribeInstances",
                "ec2:CreateTags", "iam:PassRole")


def check_head_role(path: Path, conf: dict) -> list[str]:
    if (conf.get("provider") or {}).get("type") != "aws":
        return []
    head = (conf.get("available_node_types") or {}).get(conf.get("head_node_type"), {})
    if "IamInstanceProfile" not in (head.get("node_config") or {}):
        return []
    policy = path.parent / "aws-head-policy.json"
    try:
        import json

        doc = json.loads(policy.read_text())
        granted = {a for st in doc.get("Statement", []) if st.get("Effect") == "Allow"
                   for a in ([st["Action"]] if isinstance(st.get("Action"), str)
                             else st.get("Action", []))}
    except (OSError, ValueError, AttributeError, KeyError) as e:
        return [f"{path}: the head's IamInstanceProfile replaces Ray's default role, so the "
                f"head needs a policy that lets it launch workers; {policy} is not readable "
                f"({_first_line(e)}): ship it with {', '.join(HEAD_ACTIONS)}"]
    lacking = [a for a in HEAD_ACTIONS if a not in granted and
               f"{a.split(':')[0]}:*" not in granted]
    if lacking:
        return [f"{policy}: the head's policy lacks {', '.join(lacking)}; without them the "
                "autoscaler on the head cannot launch or stop workers"]
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


#: the extras of distst the image must carry (runtime.loggers: [mlflow]; `tensorboard`)
IMAGE_EXTRAS = ("mlflow", "tensorboard")


def check_dockerfile(path: Path, text: str) -> list[str]:
    flat = re.sub(r"\\\n\s*", " ", text)
    runs = [ln.strip()[4:] for ln in flat.splitlines() if ln.strip().startswith("RUN ")]
    frozen = next((m.group(1) for r in runs
                   if (m := re.search(r"pip list --format=freeze > (\S+)", r))), None)
    installs = [r for r in runs if "pip install" in r]
    if frozen is None or runs.index(next(r for r in runs if frozen in r)) > \
            runs.index(installs[0]):
        return [f"{path}: no constraints from the base image before the first pip install; "
                "add RUN pip list --format=freeze > /home/ray/image-constraints.txt there and "
                "-c /home/ray/image-constraints.txt to every pip install (else pip may move "
                "the packages Ray was built with)"]
    out = [f"{path}: RUN {r[:60]}...: pip install without -c {frozen} may move the packages "
           "Ray was built with; add -c " + frozen for r in installs if f"-c {frozen}" not in r]
    extras = [set(m.group(1).split(",")) for r in installs
              if (m := re.search(r"/distst\[([\w,]+)\]", r))]
    missing = [e for e in IMAGE_EXTRAS if not any(e in x for x in extras)]
    if missing:
        out.append(f"{path}: distst is installed without the extras {missing}; install "
                   f"\"/home/ray/distst[{','.join(IMAGE_EXTRAS)}]\"")
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
            from distst.layout import Layout

            cfg = load_config(ROOT / args.config, sets)
            given = {s.split("=", 1)[0] for s in args.set or []}
            where = f"{path}: distst train {args.config}"
            if "runtime.storage" not in given:
                return [f"{where}: the run would go to runtime.storage={cfg.runtime.storage} "
                        "on the node that runs the command; add --set runtime.storage=URI "
                        "(s3://BUCKET/runs) or a folder every node mounts"]
            if Layout.of(cfg).partitioned and not cfg.partition.plan \
                    and "data.cache_dir" not in given:
                return [f"{where}: {cfg.runtime.mode} mode makes its plan on the fly in "
                        f"data.cache_dir={cfg.data.cache_dir} of the node that runs the "
                        "command, which the workers do not read; make the plan on shared "
                        "storage first (python -m distst partition DATA --out "
                        "s3://BUCKET/plans/NAME) and add --set partition.plan=s3://BUCKET/"
                        "plans/NAME, or set data.cache_dir to a folder every node mounts"]
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
    ignore = kit / "Dockerfile.dockerignore"
    if ".venv" not in (ignore.read_text().split() if ignore.is_file() else []):
        problems.append(f"{ignore}: the image is built from the checkout (docker build -f "
                        "cluster/Dockerfile .); without .venv listed here the whole virtual "
                        "environment goes into the build context")
    files = [kit / "Dockerfile", *(kit / n for n in LAUNCHERS + SCRIPTS),
             *sorted((kit / "kuberay").glob("*.yaml"))]
    for path in files:
        text = path.read_text()
        problems += check_images(path, text, ray, version)
        if path.name == "Dockerfile":
            problems += check_dockerfile(path, text)
        if path.parent.name == "kuberay":
            problems += (check_kuberay_auth(path, text) + check_kuberay_pods(path, text)
                         + check_kuberay_secrets(path, text))
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
