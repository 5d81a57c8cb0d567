"""train.heap_slack_mib: the trimmer hands glibc's freed heap pages back to the system."""

import json
import subprocess
import sys
import textwrap

import pytest

from distst.config import load_config
from distst.engine import memory
from distst.engine.memory import HeapTrimmer
from distst.errors import DiststError

pytestmark = pytest.mark.skipif(memory._glibc()[0] is None, reason="needs glibc's malloc")


def test_trimmer_returns_pinned_holes_and_only_when_over_the_slack():
    """The pattern a recurrent step leaves: large blocks freed between small ones that live
    on. glibc keeps the holes resident; one call over the slack returns them, and a call with
    nothing new to return does nothing. In a child process, so that the heap is its own."""
    code = textwrap.dedent("""
        import json
        import torch
        from distst.engine.memory import HeapTrimmer

        # freeing one mmapped 8 MB block lifts glibc's mmap threshold above 8 MB, so the
        # blocks below come from the heap, as a long run's per-step tensors do
        torch.ones(2**21)
        trim = HeapTrimmer(slack_mib=64)
        big, pins = [], []
        for _ in range(64):
            big.append(torch.ones(2**21))  # 8 MB, every page touched
            pins.append(torch.ones(2**14))  # 64 KB that lives on, after each block
        held = trim.rss()
        del big
        freed = trim.rss()
        before = trim.trims
        trim()
        after = trim.rss()
        first = trim.trims
        trim()
        print(json.dumps(dict(held=held, freed=freed, after=after, before=before,
                              first=first, second=trim.trims)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    mib = 2**20
    # the 512 MiB of freed blocks stay resident until the trim, and leave with it
    assert r["freed"] > r["held"] - 64 * mib, r
    assert r["freed"] - r["after"] > 400 * mib, r
    assert (r["before"], r["first"], r["second"]) == (0, 1, 1), r


def test_trimmer_refuses_a_slack_below_one_mib():
    for bad in (0, -5, 1.5, True):
        with pytest.raises(DiststError, match=r"train.heap_slack_mib=.*integer >= 1"):
            HeapTrimmer(bad)


def test_trimmer_names_the_key_without_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_glibc", lambda: (None, "the platform is darwin"))
    with pytest.raises(DiststError, match=r"train.heap_slack_mib=256.*darwin.*"
                                          r"set train.heap_slack_mib=0"):
        HeapTrimmer(256)


def test_config_refuses_a_negative_slack(tmp_path):
    with pytest.raises(DiststError, match=r"'train.heap_slack_mib' must be >= 0.*got -1"):
        load_config(None, ["train.heap_slack_mib=-1"])
