"""A signed list of the files in a sweep directory, so that ``distst tune --resume`` only
ever hands Ray Tune a folder this user's distst wrote.

``Tuner.restore`` unpickles ``tuner.pkl``, the searcher state and the trials in the
experiment state: a sweep folder from somewhere else (a shared drive, a download) could run
any code. distst therefore writes ``distst-manifest.json`` beside Ray's files: the SHA-256 of
every top-level file and of every ``*.pkl`` below, with an HMAC-SHA256 over the list under a
key that never leaves this user's home (``~/.config/distst/sweep.key``, mode 0600, made on
first use; ``DISTST_KEY_FILE`` points elsewhere). The driver re-signs after each Tune step
that changed a file, on Ctrl-C and at the end; ``--resume`` refuses a folder whose files do
not match, naming them. Knowing the file format is not enough to forge it: the key is needed.

Each signed file is also kept, content-addressed, in ``.distst-signed/``: a driver killed
between Tune writing its state and distst signing it leaves a folder that resumes from the
last signed state (one Tune step earlier) instead of one that can never be resumed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path

from distst.errors import DiststError
from distst.storage import write_atomic
from distst.graph.partition.plan import sha256_file

MANIFEST = "distst-manifest.json"
_FORMAT = "distst-sweep-manifest-v1"
SIGNED = ".distst-signed"
_SET_ASIDE = ".unsigned"


def key_file() -> Path:
    return Path(os.environ.get("DISTST_KEY_FILE")
                or Path.home() / ".config" / "distst" / "sweep.key")


def _key(create: bool) -> bytes | None:
    p = key_file()
    if p.is_file():
        return p.read_bytes()
    if not create:
        return None
    p.parent.mkdir(parents=True, exist_ok=True)
    # never readable by others; the first writer wins when two drivers start at once
    write_atomic(p, secrets.token_bytes(32), mode=0o600, exclusive=True)
    return p.read_bytes()


def guarded_files(sdir: Path) -> dict[str, Path]:
    """What Tune may read back: every top-level file and every pickle below, by relative
    path (the manifest itself and temp files excluded)."""
    out = {}
    for p in sorted(sdir.iterdir()):
        if p.is_file() and p.name != MANIFEST and not p.name.endswith((".tmp", _SET_ASIDE)):
            out[p.name] = p
    for p in sorted(sdir.rglob("*.pkl")):
        if p.is_file() and p.parent != sdir and SIGNED not in p.parts:
            out[str(p.relative_to(sdir))] = p
    return out


def _mac(key: bytes, files: dict[str, str]) -> str:
    body = json.dumps(files, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(sdir: str | Path) -> None:
    """(Re)write the manifest of ``sdir`` (atomically) and keep a copy of each signed file."""
    sdir = Path(sdir)
    store = sdir / SIGNED
    store.mkdir(exist_ok=True)
    files = {}
    for name, p in guarded_files(sdir).items():
        data = p.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        files[name] = digest
        if not (store / digest).is_file():
            write_atomic(store / digest, data)
    doc = {"format": _FORMAT, "files": files, "hmac": _mac(_key(create=True), files)}
    write_atomic(sdir / MANIFEST, json.dumps(doc, indent=1, sort_keys=True))
    keep = set(files.values())
    for old in store.iterdir():
        if old.name not in keep and not old.name.startswith("."):
            old.unlink(missing_ok=True)


def is_current(sdir: str | Path) -> bool:
    """Whether the manifest covers the files exactly as they are now (no rollback needed)."""
    sdir = Path(sdir)
    try:
        files = json.loads((sdir / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    current = guarded_files(sdir)
    return set(current) <= set(files) and all(files[n] == sha256_file(p)
                                              for n, p in current.items())


def verify(sdir: str | Path) -> None:
    """Raise DiststError unless every file Tune would read is the one distst signed."""
    sdir = Path(sdir)
    mp = sdir / MANIFEST
    fix = ("start the sweep again under a new name (distst tune SWEEP.yaml --set name=...); "
           "distst resumes only sweep folders it wrote itself, because resuming unpickles them")
    if not mp.is_file():
        raise DiststError(f"{sdir} has no {MANIFEST}: it was not written by distst (or by a "
                          f"distst before signed sweeps) and is not resumed; {fix}")
    try:
        doc = json.loads(mp.read_text())
        files, mac = dict(doc["files"]), str(doc["hmac"])
        ok_format = doc.get("format") == _FORMAT
    except (ValueError, KeyError, TypeError):
        ok_format = False
    if not ok_format:
        raise DiststError(f"{mp} is not a distst sweep manifest; {fix}")
    key = _key(create=False)
    if key is None or not hmac.compare_digest(_mac(key, files), mac):
        raise DiststError(f"{mp} was not signed with this user's key ({key_file()}): the "
                          f"sweep was written elsewhere or the manifest was edited; {fix}")
    current = guarded_files(sdir)
    changed = [name for name, p in current.items() if files.get(name) != sha256_file(p)]
    if not changed:
        return
    store = sdir / SIGNED
    copies = {name: store / files[name] for name in files}
    if all(c.is_file() and sha256_file(c) == files[name] for name, c in copies.items()):
        # roll back to the last signed state: signed files from their copies, files
        # that appeared since then set aside (renamed, never deleted)
        for name in changed:
            if name in files:
                write_atomic(sdir / name, copies[name].read_bytes())
            else:
                current[name].rename(current[name].with_name(current[name].name + _SET_ASIDE))
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        print(f"sweep {sdir}: {shown} changed after distst last signed the sweep (driver "
              "stopped mid-write?); resuming from the last signed state", flush=True)
        return
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                      else "")
    raise DiststError(f"{sdir}: {shown} changed or appeared since distst last signed the "
                      f"sweep, and the signed copies are gone; {fix}")
