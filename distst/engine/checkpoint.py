"""Self-describing checkpoints: everything needed to resume or re-evaluate without the run.

A checkpoint directory holds ``checkpoint.pt`` (trainer state: model and optimizer state,
epoch, best model, history; plus the resolved config, the fitted scaler, the dataset
directory and the model's data-derived sizes) and ``config.yaml`` for people to read.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

import distst
from distst.config import Config, config_from_dict
from distst.errors import DiststError
from distst.storage import Location, atomic_file, location, write_atomic

CHECKPOINT_FILE = "checkpoint.pt"
try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

#: what a pickled uint32 numpy array needs (see load_checkpoint); no callable beyond these
_NUMPY_ARRAY_GLOBALS = [_reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def save_checkpoint(directory: str | Path, trainer_state: dict, cfg: Config, bundle, extra: dict | None = None) -> Path:
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sizes = {k: v for k, v in bundle.model_data_kwargs().items()
             if k not in ("edge_index", "edge_weight")}
    payload = {
        "format": "distst-checkpoint-v1",
        "distst_version": distst.__version__,
        "trainer": trainer_state,
        "config": cfg.to_dict(),
        "scaler": bundle.scaler.state_dict(),
        "dataset_dir": bundle.dataset_dir,
        "dataset_hashes": bundle.dataset_hashes(),
        "model_name": cfg.model.name,
        "data_sizes": sizes,
        "extra": extra or {},
    }
    with atomic_file(d / CHECKPOINT_FILE) as tmp:
        torch.save(payload, tmp)
    write_atomic(d / "config.yaml", cfg.to_yaml())
    return d


def checkpoint_dirs(run_dir: str | Path | Location) -> list[Location]:
    """A run's checkpoint folders, oldest first: ``checkpoint_NNNNNN`` (local runs) or
    ``checkpoint_<date>`` (Ray runs); Ray's files beside them, such as
    checkpoint_manager_snapshot.json, are not checkpoints. ``run_dir``: a path or a URI."""
    d = location(run_dir)
    if d.is_local and not Path(d.path).is_dir():
        return []
    return [c for c in d.glob("checkpoint_*") if c.is_dir()]


_WARNED: set[str] = set()  # incomplete checkpoints already reported by this process


def _complete(f: Location) -> bool:
    """Whether a checkpoint file ends as torch.save ends it: a zip archive whose central
    directory is at the end, which any cut-short write loses."""
    if f.is_local:
        return zipfile.is_zipfile(f.local)
    return zipfile.is_zipfile(io.BytesIO(f.read_bytes()))


def resolve_checkpoint(path: str | Path | Location) -> Location:
    """Accept a checkpoint dir, its checkpoint.pt, or a run dir (then its latest checkpoint),
    as a local path or a URI."""
    p = location(path)
    if p.name == CHECKPOINT_FILE and p.is_file():
        return p.parent
    if (p / CHECKPOINT_FILE).is_file():
        return p
    if p.is_dir():
        found = [c for c in checkpoint_dirs(p) if (c / CHECKPOINT_FILE).is_file()]
        for k, c in enumerate(reversed(found)):
            if _complete(c / CHECKPOINT_FILE):
                if k and str(found[-1]) not in _WARNED:
                    _WARNED.add(str(found[-1]))
                    print(f"WARNING: {found[-1] / CHECKPOINT_FILE} is cut short (an interrupted "
                          f"write or a full disk); using {c.name}, the newest complete "
                          "checkpoint before it", file=sys.stderr, flush=True)
                return c
        if found:
            raise DiststError(f"{p}: none of its {len(found)} checkpoint(s) is complete (each "
                              f"{CHECKPOINT_FILE} is cut short); the run cannot be resumed or "
                              "evaluated: start it again without --resume")
    raise DiststError(
        f"{p} is not a distst checkpoint (no {CHECKPOINT_FILE} in it nor in a checkpoint_* "
        "folder); pass a run directory printed by 'distst train' or one of its checkpoint_* dirs"
    )


def load_checkpoint(path: str | Path | Location, map_location="cpu") -> tuple[dict, Config]:
    d = resolve_checkpoint(path)
    f = d / CHECKPOINT_FILE
    try:
        # remote: the few MB come into memory; local: read in place
        source = f.local if f.is_local else io.BytesIO(f.read_bytes())
        # weights_only: tensors and plain containers only, so a crafted file cannot run code
        # a numpy uint32 array (the RNG state of checkpoints written before it became a
        # tensor) is data, not code: its globals are admitted, nothing else
        with torch.serialization.safe_globals(_NUMPY_ARRAY_GLOBALS):
            payload = torch.load(source, map_location=map_location, weights_only=True)
    except DiststError:
        raise
    except Exception as e:
        text = str(e)
        if "WeightsUnpickler error" in text:
            rest = text.split("WeightsUnpickler error:", 1)[1]
            text = next((ln.strip() for ln in rest.splitlines() if ln.strip()), text)
        if "Unsupported global" in text:  # a class or function the safe unpickler refused
            text = text.split(" was not an allowed global")[0]
            raise DiststError(
                f"{d / CHECKPOINT_FILE} holds Python objects that distst checkpoints never "
                f"contain ({text}); it was not written by this distst version or was tampered "
                "with, and is not loaded (loading it could run code)") from None
        first = text.splitlines()[0] if text else type(e).__name__  # truncated or foreign
        raise DiststError(f"{d / CHECKPOINT_FILE} cannot be read ({first}); it is not a "
                          "complete distst checkpoint") from None
    if not isinstance(payload, dict) or payload.get("format") != "distst-checkpoint-v1":
        raise DiststError(f"{d / CHECKPOINT_FILE} is not a distst checkpoint (format mismatch)")
    return payload, config_from_dict(payload["config"])


def check_resume(path: str | Path | Location, cfg: Config, dataset_dir: str | Path) -> None:
    """Refuse to continue a run on another model or another dataset than it was trained on
    (it would overwrite that run's results with a mixture), naming both."""
    from distst.graph.partition.plan import input_hashes

    payload, _ = load_checkpoint(path)
    d = resolve_checkpoint(path)
    if payload.get("model_name") != cfg.model.name:
        raise DiststError(
            f"--resume {d}: the checkpoint is a {payload.get('model_name')} model but the "
            f"config trains {cfg.model.name}; resume with the run's own config.yaml, or start "
            "a new run without --resume")
    saved = payload.get("dataset_hashes")
    if saved and saved != input_hashes(dataset_dir):
        raise DiststError(
            f"--resume {d}: the checkpoint was trained on dataset {payload.get('dataset_dir')} "
            f"but data.path is {dataset_dir}, whose files differ; resume with the same dataset, "
            "or start a new run without --resume")
