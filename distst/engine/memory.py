"""Bounding the memory glibc's allocator holds on CPU (``train.heap_slack_mib``).

On Linux, torch's CPU tensors come from glibc malloc. glibc raises its mmap threshold up to
32 MB as large blocks are freed, after which the per-step tensors of a large graph (17 MB at
1,026 sensors, batch 64, 64 features) come from the heap, and freed heap memory stays resident
unless it is at the heap's top. A recurrent model's step allocates its internals between
tensors that live on (its state, the inputs ``train.recompute: step`` keeps), so the holes
they leave are pinned: DCRNN at 1,026 sensors, batch 64, with recompute peaks at ~13 GB of RSS
while its live allocations never exceed 2.1 GB above the model and data (``benchmarks/RESULTS.md``, "The heap").

:class:`HeapTrimmer` hands those free pages back (``malloc_trim(0)``, which releases free
pages inside the heap too) whenever the resident memory beyond the live allocations has grown
by more than the slack since the last trim. The engine calls it at every recurrent step (the
model's :attr:`~distst.nn.base.ForecastModel.step_hook`) and after every optimizer step. The
price is that a trimmed page is faulted in (and zeroed) again when it is reused, so a small
slack trims often and costs more time.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from distst.errors import DiststError


class _MallInfo2(ctypes.Structure):
    # glibc >= 2.33, <malloc.h>: every field a size_t
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _glibc():
    """glibc's handle with ``mallinfo2`` and ``malloc_trim``, or a reason it has none."""
    if not sys.platform.startswith("linux"):
        return None, f"the platform is {sys.platform}, not Linux with glibc"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.mallinfo2.restype = _MallInfo2
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.malloc_trim.restype = ctypes.c_int
    except (OSError, AttributeError) as e:  # musl, or glibc older than 2.33
        return None, f"the C library has no mallinfo2/malloc_trim (glibc >= 2.33 needed): {e}"
    return libc, ""


class HeapTrimmer:
    """Callable: return glibc's free heap pages to the system once they exceed ``slack_mib``.

    The measure is ``RSS - live allocations`` (``mallinfo2``: in-use heap bytes plus mmapped
    blocks). Code, libraries and memory-mapped data also count in RSS, so the trimmer compares
    with the value right after its last trim (the floor it cannot lower) rather than with 0.
    ``trims`` counts the calls that trimmed.
    """

    def __init__(self, slack_mib: int, key: str = "train.heap_slack_mib"):
        if isinstance(slack_mib, bool) or not isinstance(slack_mib, int) or slack_mib < 1:
            raise DiststError(f"{key}={slack_mib!r}: the slack must be an integer >= 1 (MiB)")
        libc, why = _glibc()
        if libc is None:
            raise DiststError(f"{key}={slack_mib}: trimming the heap needs glibc's malloc, but "
                              f"{why}; set {key}=0")
        self.libc = libc
        self.slack = slack_mib * 2**20
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.statm = os.open("/proc/self/statm", os.O_RDONLY)
        self.trims = 0
        self.floor = self.excess()

    def rss(self) -> int:
        """Resident bytes of this process (the second field of /proc/self/statm, in pages)."""
        return int(os.pread(self.statm, 128, 0).split()[1]) * self.page

    def excess(self) -> int:
        """Resident bytes beyond what malloc has handed out and not got back."""
        info = self.libc.mallinfo2()
        return self.rss() - (info.uordblks + info.hblkhd)

    def __call__(self) -> None:
        excess = self.excess()
        if excess - self.floor > self.slack:
            self.libc.malloc_trim(0)
            self.trims += 1
            self.floor = self.excess()
        else:
            # glibc shrank the heap's top itself: count growth from there
            self.floor = min(self.floor, excess)

    def close(self) -> None:
        if getattr(self, "statm", -1) >= 0:
            os.close(self.statm)
            self.statm = -1

    def __del__(self):
        self.close()
