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
import time
from pathlib import Path

from distst.errors import DiststError
from distst.storage import Location, location, write_atomic

MANIFEST = "distst-manifest.json"
_FORMAT = "distst-sweep-manifest-v1"
SIGNED = ".distst-signed"
_SET_ASIDE = ".unsigned"


def key_file() -> Path:
    return Path(os.environ.get("DISTST_KEY_FILE")
                or Path.home() / ".config" / "distst" / "sweep.key")


#: a key is at least this many bytes of at least KEY_MIN_DISTINCT different values: distst
#: makes 32 random bytes (about 30 distinct); an empty, short or repetitive key file lets
#: anyone compute a manifest's HMAC and forge a sweep that --resume would unpickle
KEY_MIN_BYTES = 32
KEY_MIN_DISTINCT = 16


def _check_key(p: Path, key: bytes) -> bytes:
    fix = (f"delete {p} (distst makes a new random key; sweeps signed with the old one can no "
           "longer be resumed) or point DISTST_KEY_FILE at a key of 32 random bytes")
    if len(key) < KEY_MIN_BYTES or len(set(key)) < KEY_MIN_DISTINCT:
        raise DiststError(f"sweep key {p} is weak ({len(key)} bytes, {len(set(key))} distinct "
                          f"values; at least {KEY_MIN_BYTES} bytes of {KEY_MIN_DISTINCT} "
                          f"distinct values): with it a sweep folder can be forged; {fix}")
    mode = p.stat().st_mode & 0o077
    if mode:
        raise DiststError(f"sweep key {p} can be read or written by other users (mode "
                          f"{oct(p.stat().st_mode & 0o777)}): with it they can forge a sweep "
                          f"folder; chmod 600 {p}, or {fix}")
    return key


def _key(create: bool) -> bytes | None:
    p = key_file()
    try:
        if p.is_file():
            return _check_key(p, p.read_bytes())
        if p.exists():
            raise DiststError(f"sweep key {p} is not a file; remove it or point "
                              "DISTST_KEY_FILE at a file distst may create")
    except OSError as e:
        raise DiststError(f"sweep key {p} cannot be read ({e.strerror or e})") from None
    if not create:
        return None
    p.parent.mkdir(parents=True, exist_ok=True)
    # never readable by others; the first writer wins when two drivers start at once
    write_atomic(p, secrets.token_bytes(32), mode=0o600, exclusive=True)
    return _check_key(p, p.read_bytes())


def _guarded(name: str) -> bool:
    """What Tune may read back: every top-level file and every pickle below (the manifest,
    the signed copies and temp files excluded)."""
    if "/" not in name:
        return name != MANIFEST and not name.endswith((".tmp", _SET_ASIDE))
    return name.endswith(".pkl") and not name.startswith(SIGNED + "/")


def stamp(sdir: str | Path | Location) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of the guarded files, from one listing of the folder."""
    return [f for f in location(sdir).files() if _guarded(f[0])]


def guarded_files(sdir: str | Path | Location) -> dict[str, Location]:
    """The guarded files by relative path."""
    sdir = location(sdir)
    return {name: sdir / name for name, _, _ in stamp(sdir)}


def _sha(loc: Location) -> str:
    return hashlib.sha256(loc.read_bytes()).hexdigest()


def _mac(key: bytes, files: dict[str, str]) -> str:
    body = json.dumps(files, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


#: (folder, name, size, mtime) -> sha256 of files this process signed: the driver re-signs
#: often, and reading every unchanged file back from an object store each time is slow
_SEEN: dict[tuple, str] = {}


def sign(sdir: str | Path | Location) -> None:
    """(Re)write the manifest of ``sdir`` (atomically) and keep a copy of each signed file."""
    sdir = location(sdir)
    store = sdir / SIGNED
    store.mkdir()
    have = {loc.name for loc in store.iterdir()}
    files = {}
    for name, size, mtime in stamp(sdir):
        key = (str(sdir), name, size, mtime)
        # a time of the last two seconds may not tell two writes apart (object stores keep
        # whole seconds)
        settled = mtime and time.time_ns() - mtime > 2_000_000_000
        digest = _SEEN.get(key) if settled else None
        if digest is None or digest not in have:  # new or changed: read it (once)
            data = (sdir / name).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest not in have:
                (store / digest).write_bytes(data)
                have.add(digest)
            _SEEN[key] = digest
        files[name] = digest
    doc = {"format": _FORMAT, "files": files, "hmac": _mac(_key(create=True), files)}
    (sdir / MANIFEST).write_text(json.dumps(doc, indent=1, sort_keys=True))
    keep = set(files.values())
    for old in store.iterdir():
        if old.name not in keep and not old.name.startswith("."):
            old.rmtree()


def is_current(sdir: str | Path | Location) -> bool:
    """Whether the manifest covers the files exactly as they are now (no rollback needed)."""
    sdir = location(sdir)
    try:
        files = json.loads((sdir / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, RecursionError):
        return False
    current = guarded_files(sdir)
    return set(current) <= set(files) and all(files[n] == _sha(p) for n, p in current.items())


def verify(sdir: str | Path | Location) -> None:
    """Raise DiststError unless every file Tune would read is the one distst signed."""
    key = _key(create=False)  # a weak key is refused before anything else is looked at
    sdir = location(sdir)
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
    except (ValueError, KeyError, TypeError, RecursionError):
        ok_format = False
    if not ok_format:
        raise DiststError(f"{mp} is not a distst sweep manifest; {fix}")
    if key is None or not hmac.compare_digest(_mac(key, files), mac):
        raise DiststError(f"{mp} was not signed with this user's key ({key_file()}): the "
                          f"sweep was written elsewhere or the manifest was edited; {fix}")
    current = guarded_files(sdir)
    changed = [name for name, p in current.items() if files.get(name) != _sha(p)]
    if not changed:
        return
    store = sdir / SIGNED
    copies = {name: store / files[name] for name in files}
    if all(c.is_file() and _sha(c) == files[name] for name, c in copies.items()):
        # roll back to the last signed state: signed files from their copies, files
        # that appeared since then set aside (renamed, never deleted)
        for name in changed:
            if name in files:
                (sdir / name).write_bytes(copies[name].read_bytes())
            else:
                current[name].rename(current[name].name + _SET_ASIDE)
        shown = ", ".join(changed[:5]) + (" ..." if len(changed) > 5 else "")
        print(f"sweep {sdir}: {shown} changed after distst last signed the sweep (driver "
              "stopped mid-write?); resuming from the last signed state", flush=True)
        return
    shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                      else "")
    raise DiststError(f"{sdir}: {shown} changed or appeared since distst last signed the "
                      f"sweep, and the signed copies are gone; {fix}")
