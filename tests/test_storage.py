"""distst.storage: local and remote locations, folders published whole, node-local fetches."""

import json
import threading

import pytest

from distst import storage
from distst.errors import DiststError
from distst.storage import FETCHED, fetch, is_uri, location


def _folder(tmp_path, files: dict):
    src = tmp_path / "src"
    for name, body in files.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(body)
    return src


def test_uris_and_paths_are_told_apart(tmp_path):
    assert is_uri("s3://b/k") and is_uri("file:///x") and is_uri("gs://b")
    assert not is_uri("runs") and not is_uri("/a/b://c") and not is_uri(tmp_path)
    local = location(f"file://{tmp_path}")
    assert local.is_local and local.local == tmp_path
    assert location(tmp_path) == local
    with pytest.raises(DiststError, match="needs a bucket"):
        location("s3:///key")


@pytest.mark.parametrize("where", ["local", "s3"])
def test_location_reads_writes_lists_and_removes(where, tmp_path, request):
    root = (location(tmp_path / "root") if where == "local"
            else location(request.getfixturevalue("s3")[0] + "/root"))
    run = root / "run-1"
    run.mkdir()
    (run / "config.yaml").write_text("a: 1\n")
    (run / "metrics.jsonl").append_text('{"epoch": 1}\n')
    (run / "metrics.jsonl").append_text('{"epoch": 2}\n')
    (run / "fetch" / "rank_0.json").write_text("{}")  # parents are created
    assert (run / "config.yaml").read_text() == "a: 1\n"
    assert [json.loads(ln)["epoch"] for ln in (run / "metrics.jsonl").read_text().splitlines()] \
        == [1, 2]
    assert [c.name for c in run.iterdir()] == ["config.yaml", "fetch", "metrics.jsonl"]
    assert [c.name for c in run.glob("*.yaml")] == ["config.yaml"]
    assert run.is_dir() and (run / "config.yaml").is_file() and not (run / "nope").exists()
    assert [f[0] for f in run.files()] == ["config.yaml", "fetch/rank_0.json", "metrics.jsonl"]
    assert run.parent == root and run.name == "run-1"
    with pytest.raises(FileNotFoundError):
        (run / "nope").read_bytes()
    run.rmtree()
    assert not run.exists()


@pytest.mark.parametrize("where", ["local", "s3"])
def test_put_dir_replaces_a_folder_whole_with_its_marker_last(where, tmp_path, request):
    dest = (location(tmp_path / "plan") if where == "local"
            else location(request.getfixturevalue("s3")[0] + "/plan"))
    old = _folder(tmp_path / "old", {"META.json": b"old", "part_0/x": b"0", "stale": b"s"})
    dest.put_dir(old, marker="META.json")
    new = _folder(tmp_path / "new", {"META.json": b"new", "part_0/x": b"1" * 100})
    if where == "s3":  # record the order in which objects appear
        seen = []
        real = storage.Location._upload

        def spy(self, local, name):
            seen.append(name)
            return real(self, local, name)

        storage.Location._upload = spy
        try:
            dest.put_dir(new, marker="META.json")
        finally:
            storage.Location._upload = real
        assert seen[-1] == "META.json"
    else:
        dest.put_dir(new, marker="META.json")
    assert [f[0] for f in dest.files()] == ["META.json", "part_0/x"]  # 'stale' is gone
    assert (dest / "META.json").read_text() == "new"
    assert not [p for p in (tmp_path).iterdir() if p.name.startswith(".plan")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_fetch_copies_once_per_node_and_verifies(where, tmp_path, request):
    src_dir = _folder(tmp_path, {"meta.json": b"{}", "values.npy": b"v" * 5000})
    src = location(src_dir)
    if where == "s3":
        src = location(request.getfixturevalue("s3")[0] + "/data")
        src.put_dir(src_dir, marker="meta.json")
    dest = tmp_path / "cache" / "data-key"
    results = []
    threads = [threading.Thread(target=lambda: results.append(fetch(src, dest)))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [0, 0, 5002]  # one worker fetched, the others waited for it
    assert (dest / "values.npy").read_bytes() == b"v" * 5000 and (dest / FETCHED).is_file()
    # no lock or claim file is left in the node cache (.NAME.lock files once piled up there)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data-key"]

    def refuse(tmp):
        raise DiststError("does not match the plan's hash")

    bad = tmp_path / "cache" / "bad"
    with pytest.raises(DiststError, match="hash"):
        fetch(src, bad, verify=refuse)
    assert not bad.exists()  # nothing half-fetched stays in the cache
    assert not [p for p in bad.parent.iterdir() if p.name.startswith(".bad.tmp")]


def test_unreachable_endpoint_is_one_clear_error():
    storage.configure({"endpoint_override": "http://127.0.0.1:9", "scheme": "http",
                       "region": "us-east-1", "connect_timeout": 1, "request_timeout": 1})
    try:
        with pytest.raises(DiststError) as e:
            location("s3://bucket/runs").exists()
        msg = str(e.value)
        assert "s3://bucket/runs" in msg and "endpoint" in msg and "\n" not in msg
    finally:
        storage.configure(None)


def test_missing_bucket_write_names_the_uri(s3):
    base, _ = s3
    bad = location("s3://no-such-bucket-distst/x.txt")
    with pytest.raises(DiststError, match="s3://no-such-bucket-distst/x.txt"):
        bad.write_text("x")


# -- claims: one writer per output folder ------------------------------------------------
def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _write_claim(out, pid):
    import socket

    (out.parent / f".{out.name}.writing").write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "since": "2026-12-07 10:00:00"}))


def test_a_second_writer_of_one_folder_is_refused_while_the_first_runs(tmp_path):
    """Two `data prepare` into one new --out both printed "wrote"; one replaced the other."""
    import os

    out = tmp_path / "ds"
    _write_claim(out, os.getppid())  # a process that runs, on this host
    with pytest.raises(DiststError, match=rf"{out} is being written by another distst process "
                                          rf"\(pid {os.getppid()}"):
        with storage.atomic_dir(out):
            pass
    assert not out.exists()


def test_a_killed_writers_claim_and_temp_folders_are_taken_over(tmp_path):
    """kill -9 mid-write left .NAME.tmp-* folders that nothing removed."""
    out = tmp_path / "plan"
    _write_claim(out, _dead_pid())
    (tmp_path / ".plan.tmp-abc123").mkdir()
    (tmp_path / ".plan.tmp-abc123" / "part_0").mkdir()
    (tmp_path / ".other.tmp-keep").mkdir()  # another folder's: not ours to remove
    with storage.atomic_dir(out) as tmp:
        (tmp / "META.json").write_text("{}")
        with storage.claim(out):  # re-entrant in one process
            pass
    assert (out / "META.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-keep", "plan"]


def test_file_lock_excludes_while_its_file_comes_and_goes(tmp_path):
    """The holder removes the lock file; a waiter on the removed file must not run beside
    the next holder of a new one."""
    lock, counter = tmp_path / ".x.lock", tmp_path / "n"
    counter.write_text("0")

    def bump():
        for _ in range(40):
            with storage.file_lock(lock):
                n = int(counter.read_text())
                counter.write_text(str(n + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.read_text() == "160" and not lock.exists()
