"""Where distst writes: every file and folder it produces goes through this module.

Readers must never see a half-written file or folder, whatever stops the writer (an error,
Ctrl-C, a killed process): everything is written under a temporary name beside its target
and renamed onto it in one step, the rename being atomic on a POSIX file system. A folder
(a dataset, a partition plan, a checkpoint) is filled in a temporary sibling and swapped in
as a whole. Local paths only for now; remote storage will be taught here.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

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


@contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """A temporary sibling folder of ``out`` to fill; on a clean exit it replaces ``out`` as a
    whole (an existing ``out`` is swapped out, then removed), on an error it is removed.

    Whether ``out`` may be replaced at all is the caller's decision (see
    :func:`distst.data.network.check_output_dir`)."""
    out = Path(out)
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
