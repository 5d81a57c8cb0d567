"""Where distst writes: every file and folder it produces goes through this module.

Readers must never see a half-written file or folder, whatever stops the writer (an error,
Ctrl-C, a killed process): everything is written under a temporary name beside its target
and renamed onto it in one step, the rename being atomic on a POSIX file system. A folder
(a dataset, a partition plan, a checkpoint) is filled in a temporary sibling and swapped in
as a whole.

Remote storage. Datasets, plans, run folders and sweeps may live under a URI (``s3://``,
``gs://``, ``file://``: whatever ``pyarrow.fs`` opens), through :class:`Location`. Object stores
have no rename: a folder is published with its marker file uploaded last
(:meth:`Location.put_dir`), and readers require the marker. Workers never open remote files in
place: they fetch what they read into node-local scratch (:func:`fetch`), verified and cached.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from distst.errors import DiststError


def _tmp_name(path: Path) -> Path:
    # hidden, and unique per process, so two writers of one file do not share a temp file
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path to write ``path``'s content to (``torch.save``, ``np.save``...); on a
    clean exit it replaces ``path``, on an error it is removed and ``path`` is untouched."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | Path, data: str | bytes, *, mode: int | None = None,
                 exclusive: bool = False) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically.

    ``mode``: the file's permissions from its creation on (a secret is never readable by
    others, not even while it is written). ``exclusive``: keep an existing ``path`` (the first
    of several concurrent writers wins) instead of replacing it.
    """
    path = Path(path)
    body = data.encode() if isinstance(data, str) else data
    tmp = _tmp_name(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    fd = os.open(tmp, flags, 0o666 if mode is None else mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        else:
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


_CLAIMS: dict[str, int] = {}  # output folders this process holds: path -> depth


def _claim_file(out: Path) -> Path:
    # not .NAME.lock: fetch's flock file of the node cache has that name
    return out.parent / f".{out.name}.writing"


def _holder(lock: Path) -> dict:
    try:
        held = json.loads(lock.read_text())
        return held if isinstance(held, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(held: dict) -> bool:
    """Whether the process that wrote a claim may still run. On another host (a shared file
    system) distst cannot tell, so it assumes so."""
    import socket

    if held.get("host") != socket.gethostname() or not isinstance(held.get("pid"), int):
        return True
    try:
        os.kill(held["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it runs
        pass
    return True


@contextmanager
def claim(out: str | Path, what: str = "output folder") -> Iterator[None]:
    """Hold the local folder ``out`` for this process while a command makes it: the claim
    file ``.NAME.writing`` beside it is created exclusively, so a second distst writing the same
    ``out`` at the same time is refused at once instead of both printing "wrote" and one
    silently replacing the other. Re-entrant within a process.

    A claim left by a killed writer (its process is gone on this host) is taken over, and
    the temporary ``.NAME.tmp-*`` / ``.NAME.old-*`` folders it left are removed, since no
    other writer can own them."""
    import socket
    import time

    out = Path(os.path.abspath(out))
    key = str(out)
    if key in _CLAIMS:
        _CLAIMS[key] += 1
        try:
            yield
        finally:
            _CLAIMS[key] -= 1
        return
    lock = _claim_file(out)
    body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S")})
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                held = _holder(lock)
                # an empty claim is one being written this instant, unless it is old
                fresh = not held and time.time() - lock.stat().st_mtime < 10
                if fresh or (held and _alive(held)):
                    raise DiststError(
                        f"{what}: {out} is being written by another distst process (pid "
                        f"{held.get('pid')} on {held.get('host')}, since {held.get('since')}); "
                        "wait for it to finish or choose another output folder (if no such "
                        f"process runs, remove {lock})") from None
                lock.unlink(missing_ok=True)  # its writer is gone (or it is unreadable)
        else:
            raise DiststError(f"{what}: could not claim {out} ({lock} keeps reappearing); "
                              "another process is writing there")
        with os.fdopen(fd, "w") as f:
            f.write(body)
    except OSError as e:  # read-only, no permission, disk full
        raise DiststError(f"cannot write {out}: {e.strerror or e} in {out.parent}; choose an "
                          "output folder you can write") from None
    for stale in [*out.parent.glob(f".{out.name}.tmp-*"), *out.parent.glob(f".{out.name}.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    _CLAIMS[key] = 1
    try:
        yield
    finally:
        _CLAIMS[key] -= 1
        if not _CLAIMS[key]:
            del _CLAIMS[key]
            lock.unlink(missing_ok=True)


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """A temporary sibling folder of ``out`` to fill; on a clean exit it replaces ``out`` as a
    whole (an existing ``out`` is swapped out, then removed), on an error it is removed.
    ``out`` is claimed (:func:`claim`) for the while.

    Whether ``out`` may be replaced at all is the caller's decision (see
    :func:`distst.data.network.check_output_dir`)."""
    out = Path(out)
    with claim(out), _filled_dir(out) as tmp:
        yield tmp


@contextmanager
def _filled_dir(out: Path) -> Iterator[Path]:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:  # read-only, no permission, disk full
        raise DiststError(f"cannot write {out}: {e.strerror or e} in {out.parent}; choose an "
                          "output folder you can write") from None
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        os.rename(out, old)
        os.rename(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, out)


# -- locations: a local path or a URI -------------------------------------------------------
#: storage options (``runtime.storage_options``) for filesystems built from URIs in this
#: process; set by :func:`configure` where a run starts (driver, every worker)
_OPTIONS: dict = {}
_SCHEMES_WITH_OPTIONS = {"s3": "S3FileSystem", "gs": "GcsFileSystem", "gcs": "GcsFileSystem"}


def configure(options: dict | None) -> None:
    """Use ``options`` (keyword arguments of pyarrow's ``S3FileSystem`` / ``GcsFileSystem``,
    such as ``endpoint_override``, ``region``, ``access_key``) for every URI opened from now on
    in this process. Empty: pyarrow's defaults, which read the standard environment variables
    (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_REGION``, ``GOOGLE_APPLICATION_CREDENTIALS``...)."""
    _OPTIONS.clear()
    _OPTIONS.update(options or {})
    _filesystem.cache_clear()


def is_uri(target: str | Path) -> bool:
    """Whether ``target`` names remote (or ``file://``) storage rather than a plain path."""
    import re

    return isinstance(target, str) and re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", target) is not None


#: names of URI query parameters that carry credentials (pre-signed URLs, SAS tokens, keys)
_SECRET_QUERY_WORDS = ("signature", "sig", "token", "password", "passwd", "secret", "key",
                       "credential", "auth", "x-amz-", "sas")


def uri_credentials(target) -> str | None:
    """What credential the URI ``target`` carries (a user or password before ``@``, or a
    query parameter such as ``X-Amz-Signature``), or None. Plain paths carry none."""
    if not is_uri(target):
        return None
    rest = str(target).split("://", 1)[1]
    authority = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        user = authority.rsplit("@", 1)[0]
        return "a user name and password before '@'" if ":" in user else \
            "a user name (an access key) before '@'"
    query = rest.partition("?")[2]
    for part in filter(None, query.split("&")):
        name = part.split("=", 1)[0].lower()
        if any(w in name for w in _SECRET_QUERY_WORDS):
            return f"the query parameter {name!r}"
    return None


def redact_uri(target) -> str:
    """``target`` with what :func:`uri_credentials` finds replaced by ``***``: the form in
    which an error may name such a URI."""
    text = str(target)
    if not is_uri(text):
        return text
    scheme, rest = text.split("://", 1)
    head, sep, tail = rest.partition("/")
    if "@" in head.split("?", 1)[0]:
        head = "***@" + head.rsplit("@", 1)[1]
    out = f"{scheme}://{head}{sep}{tail}"
    return out.split("?", 1)[0] + "?***" if "?" in out else out


def refuse_uri_credentials(target, what: str) -> None:
    """Refuse a URI that carries credentials: every run and checkpoint saves its config, and
    errors and logs repeat paths; credentials come from the environment or the machine's
    role. ``what`` names where the URI was given (a config key, a command-line argument)."""
    found = uri_credentials(target)
    if found:
        raise DiststError(
            f"{what}: the URI {redact_uri(target)} carries {found}; credentials do not belong "
            "in a URI, which distst saves with every run and repeats in messages: remove them "
            "and set them in the environment instead (AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, GOOGLE_APPLICATION_CREDENTIALS, "
            "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), or in the cluster's IAM role")


def is_remote(target: str | Path) -> bool:
    """A URI of remote storage (anything but ``file://``), told from its scheme alone."""
    return is_uri(target) and not str(target).lower().startswith("file://")


def _fs_error(uri: str, e: Exception, doing: str) -> DiststError:
    text = " ".join(str(e).split())[:300]
    return DiststError(
        f"{uri}: cannot {doing} ({text}); check the URI, that the bucket exists, and the "
        "credentials and endpoint (runtime.storage_options, or AWS_ENDPOINT_URL / "
        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, GOOGLE_APPLICATION_CREDENTIALS)")


@functools.lru_cache(maxsize=32)
def _filesystem(scheme: str, authority: str, options: tuple):
    import pyarrow.fs as pafs

    opts = dict(options)
    if scheme == "s3" and opts:
        return pafs.S3FileSystem(**opts)
    if scheme in ("gs", "gcs") and opts:
        return pafs.GcsFileSystem(**opts)
    fs, _ = pafs.FileSystem.from_uri(f"{scheme}://{authority}/")
    return fs


def resolved(p: str | Path, what: str = "path") -> Path:
    """``p`` absolute, its symlinks followed; a symlink loop is a one-line error naming it
    (Python raises RuntimeError or OSError there, which reached users as a traceback)."""
    try:
        return Path(p).resolve()
    except (RuntimeError, OSError) as e:
        reason = getattr(e, "strerror", None) or "a symlink loop"
        raise DiststError(f"{what} {p} cannot be followed ({reason}); a symbolic link on the "
                          "way points back at itself: point it at a real folder or remove "
                          "it") from None


def location(target: str | Path | "Location") -> "Location":
    """The :class:`Location` of a local path or a URI (``s3://bucket/key``, ``gs://...``,
    ``file:///abs/path``, anything ``pyarrow.fs.FileSystem.from_uri`` reads)."""
    if isinstance(target, Location):
        return target
    refuse_uri_credentials(target, "storage location")
    if not is_uri(target):
        p = Path(os.path.expandvars(os.path.expanduser(str(target))))
        real = str(resolved(p))
        return Location(None, real, real)
    scheme, rest = str(target).split("://", 1)
    scheme = scheme.lower()
    if scheme == "file":
        p = Path(rest if rest.startswith("/") else "/" + rest)
        return Location(None, str(p), str(p))
    authority, _, key = rest.partition("/")
    if not authority:
        raise DiststError(f"{target}: a {scheme}:// URI needs a bucket, e.g. "
                          f"{scheme}://my-bucket/runs")
    try:
        fs = _filesystem(scheme, authority, tuple(sorted(_OPTIONS.items())))
    except Exception as e:  # unknown scheme, bad options
        raise _fs_error(str(target), e, "open this storage") from None
    path = f"{authority}/{key}".rstrip("/")
    return Location(fs, path, f"{scheme}://{path}")


@dataclasses.dataclass(frozen=True)
class Location:
    """A file or folder on local disk (``fs is None``: plain ``pathlib`` and the atomic
    helpers above) or on a pyarrow filesystem (object stores, where a "folder" is a key
    prefix and an object appears whole or not at all). The subset of ``pathlib.Path`` that
    distst's run and plan code uses, so that the same code writes to either."""

    fs: object | None
    path: str
    uri: str

    # -- names --
    def __truediv__(self, name: str) -> "Location":
        if self.fs is None:
            p = str(Path(self.path) / name)
            return Location(None, p, p)
        return Location(self.fs, f"{self.path}/{name}", f"{self.uri}/{name}")

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def parent(self) -> "Location":
        head = self.path.rstrip("/").rsplit("/", 1)[0]
        if self.fs is None:
            return Location(None, head or "/", head or "/")
        return Location(self.fs, head, self.uri.rsplit("/", 1)[0])

    @property
    def is_local(self) -> bool:
        return self.fs is None

    @property
    def local(self) -> Path:
        if self.fs is not None:
            raise DiststError(f"{self.uri} is remote storage; distst reads it through a local "
                              "copy (fetch) and never opens it as a path")
        return Path(self.path)

    def __fspath__(self) -> str:
        return str(self.local)

    def __str__(self) -> str:
        return self.uri

    # -- queries --
    def _info(self):
        try:
            return self.fs.get_file_info(self.path)
        except OSError as e:  # unreachable endpoint, refused credentials, missing bucket
            raise _fs_error(self.uri, e, "reach it") from None

    def exists(self) -> bool:
        if self.fs is None:
            return Path(self.path).exists()
        import pyarrow.fs as pafs

        return self._info().type != pafs.FileType.NotFound

    def is_file(self) -> bool:
        if self.fs is None:
            return Path(self.path).is_file()
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.File

    def is_dir(self) -> bool:
        if self.fs is None:
            return Path(self.path).is_dir()
        import pyarrow.fs as pafs

        return self._info().type == pafs.FileType.Directory

    def iterdir(self) -> list["Location"]:
        """The entries directly under this folder (files and sub-folders), sorted by name."""
        if self.fs is None:
            p = Path(self.path)
            return [Location(None, str(c), str(c)) for c in sorted(p.iterdir())] \
                if p.is_dir() else []
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, allow_not_found=True))
        except OSError as e:
            raise _fs_error(self.uri, e, "list it") from None
        return sorted((self / i.base_name for i in infos), key=lambda loc: loc.name)

    def glob(self, pattern: str) -> list["Location"]:
        """Entries directly under this folder whose name matches ``pattern`` (one level)."""
        import fnmatch

        return [c for c in self.iterdir() if fnmatch.fnmatch(c.name, pattern)]

    # -- reading and writing --
    def read_bytes(self) -> bytes:
        if self.fs is None:
            return Path(self.path).read_bytes()
        try:
            with self.fs.open_input_stream(self.path) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as e:
            if not self.exists():  # a missing object, told from an unreachable store
                raise FileNotFoundError(self.uri) from None
            raise _fs_error(self.uri, e, "read it") from None

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def mkdir(self, parents: bool = True, exist_ok: bool = True) -> None:
        if self.fs is None:
            Path(self.path).mkdir(parents=parents, exist_ok=exist_ok)
            return
        try:
            self.fs.create_dir(self.path, recursive=True)
        except OSError as e:
            raise _fs_error(self.uri, e, "create it") from None

    def write_bytes(self, data: bytes) -> None:
        """Atomic on every filesystem: a local temp file renamed over the target; an object
        store's upload, which readers see whole or not at all."""
        if self.fs is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, data)
            return
        try:
            with self.fs.open_output_stream(self.path) as f:
                f.write(data)
        except OSError as e:
            raise _fs_error(self.uri, e, "write it") from None

    def write_text(self, text: str) -> None:
        self.write_bytes(text.encode())

    def append_text(self, text: str) -> None:
        """Append (local); object stores cannot append, so the small file is rewritten."""
        if self.fs is None:
            with open(self.path, "a") as f:
                f.write(text)
            return
        old = self.read_bytes() if self.is_file() else b""
        self.write_bytes(old + text.encode())

    def rename(self, new_name: str) -> "Location":
        """Rename this file within its folder (an object store copies, then deletes)."""
        target = self.parent / new_name
        if self.fs is None:
            os.replace(self.path, target.path)
            return target
        try:
            self.fs.move(self.path, target.path)
        except OSError as e:
            raise _fs_error(self.uri, e, f"rename it to {new_name}") from None
        return target

    def rmtree(self) -> None:
        if self.fs is None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        try:
            if self.is_dir():
                self.fs.delete_dir(self.path)
            elif self.is_file():
                self.fs.delete_file(self.path)
        except OSError as e:
            raise _fs_error(self.uri, e, "delete it") from None

    # -- whole folders --
    def files(self) -> list[tuple[str, int, int]]:
        """(relative name, size, modification time in ns or 0) of every file below this
        folder, sorted: what identifies a folder's content without reading it."""
        if self.fs is None:
            root = Path(self.path)
            return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                          for p in root.rglob("*") if p.is_file())
        import pyarrow.fs as pafs

        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path, recursive=True,
                                                            allow_not_found=True))
        except OSError as e:
            raise _fs_error(self.uri, e, "list it") from None
        n = len(self.path.rstrip("/")) + 1
        return sorted((i.path[n:], int(i.size), int(i.mtime_ns or 0)) for i in infos
                      if i.type == pafs.FileType.File)

    def put_dir(self, src: str | Path, marker: str | None = None) -> None:
        """Publish local folder ``src`` as this folder, replacing it as a whole.

        Local: :func:`atomic_dir`. Object store (no rename): the old ``marker`` (the file
        whose presence makes the folder valid, a plan's META.json, a dataset's meta.json) is
        deleted first, the old folder removed, every other file uploaded, and ``marker``
        uploaded last, so a reader that requires the marker never sees a half-written folder.
        """
        src = Path(src)
        if self.fs is None:
            with atomic_dir(self.path) as tmp:
                shutil.copytree(src, tmp, dirs_exist_ok=True)
            return
        names = sorted(str(p.relative_to(src)) for p in src.rglob("*") if p.is_file())
        if marker is not None:
            names = [n for n in names if n != marker] + ([marker] if (src / marker).is_file()
                                                           else [])
            old = self / marker
            if old.is_file():
                self.fs.delete_file(old.path)
        self.rmtree()
        for name in names:
            self._upload(src / name, name)

    def _upload(self, local: Path, name: str) -> None:
        try:
            with open(local, "rb") as f, self.fs.open_output_stream(f"{self.path}/{name}") as out:
                shutil.copyfileobj(f, out, _STREAM_BLOCK)
        except OSError as e:
            raise _fs_error(f"{self.uri}/{name}", e, "write it") from None

    def get_dir(self, dest: str | Path, names: list[str] | None = None) -> int:
        """Copy this folder's files (or ``names``, relative) into local ``dest``; returns the
        bytes copied. Each file lands under a temp name first (:func:`atomic_file`)."""
        dest = Path(dest)
        names = names if names is not None else [f[0] for f in self.files()]
        total = 0
        for name in names:
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_file(target) as tmp:
                if self.fs is None:
                    shutil.copyfile(Path(self.path) / name, tmp)
                else:
                    try:
                        with self.fs.open_input_stream(f"{self.path}/{name}") as f, \
                                open(tmp, "wb") as out:
                            shutil.copyfileobj(f, out, _STREAM_BLOCK)
                    except OSError as e:
                        raise _fs_error(f"{self.uri}/{name}", e, "read it") from None
            total += target.stat().st_size
        return total


_STREAM_BLOCK = 8 << 20


# -- fetching into node-local scratch -------------------------------------------------------
@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes of one machine (the workers of a node).

    The lock file is removed by its holder (they once piled up in the node cache). A waiter
    may then hold a lock on a file no longer at ``path``: after taking the lock it checks
    that ``path`` is still that file, else it tries again on the new one."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        f = open(path, "a")
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # the holder before us removed it: lock the current one
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # still held: no one else has validated this file
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


#: a fetched folder is complete when this file is in it (written last, before the rename)
FETCHED = ".fetched.json"


def fetch(src: Location, dest: str | Path, names: list[str] | None = None,
          verify: Callable[[Path], None] | None = None) -> int:
    """Copy ``src``'s files (all, or ``names``) into local folder ``dest`` once per machine.

    The first caller fetches under a lock while the other workers of the node wait, then
    find ``dest`` complete and copy nothing; ``dest`` appears whole (a temp sibling, checked by
    ``verify``, then renamed), so a killed fetch leaves no partial cache entry. Callers key
    ``dest`` by what identifies the content (hashes, sizes), so a changed source is fetched
    anew. Returns the bytes this call copied (0 when the cache served it).
    """
    dest = Path(dest)
    with file_lock(dest.parent / f".{dest.name}.lock"):
        if (dest / FETCHED).is_file():
            return 0
        with atomic_dir(dest) as tmp:
            copied = src.get_dir(tmp, names)
            if verify is not None:
                verify(tmp)
            (tmp / FETCHED).write_text(json.dumps({"source": src.uri, "bytes": copied}))
        return copied


@contextmanager
def output_dir(out: str | Path, marker: str, what: str) -> Iterator[Path]:
    """Where a command writes the folder ``out`` (a path or a URI): a local ``out`` is given
    back as it is (the writer swaps it in whole, :func:`atomic_dir`); for a remote one the
    writer fills a local temp folder, published on a clean exit with ``marker`` last
    (:meth:`Location.put_dir`). A remote folder that holds files but no ``marker`` was not
    written by distst and is refused, as a local one is."""
    loc = location(out)
    if loc.is_local:
        with claim(loc.local, what):
            yield loc.local
        return
    if loc.is_dir() and loc.iterdir() and not (loc / marker).is_file():
        raise DiststError(f"{what}: output {loc} exists and holds no {marker}, so it is not "
                          "distst's to replace; choose a new prefix or remove it yourself")
    with tempfile.TemporaryDirectory(prefix="distst-publish-") as tmp:
        staged = Path(tmp) / loc.name
        yield staged
        loc.put_dir(staged, marker=marker)
