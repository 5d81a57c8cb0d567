"""Every socket a local distst command listens on, while it runs.

Runs ``distst ARGS...`` in a session of its own (a local Ray that it starts: no RAY_ADDRESS),
samples the listening sockets of every process of that session every 0.2 s until it ends, and
prints one row per (address, port, process) with how often it was seen, then whether all of
them were on loopback. Exit code 1 if one was not. Example (benchmarks/RESULTS.md):

    python scripts/probe_ports.py -- train configs/quickstart.yaml --set train.epochs=1
    python scripts/probe_ports.py -- tune configs/sweeps/gcgru.yaml --set num_samples=2
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _session(sid: int) -> set[int]:
    out = set()
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                out.add(p.pid)
        except (ProcessLookupError, PermissionError):
            continue
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then the distst arguments")
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    exe = Path(sys.executable).parent / "distst"
    proc = subprocess.Popen([str(exe), *args], cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen: dict[tuple[str, int, str], int] = {}
    samples = 0
    while proc.poll() is None:
        ours = _session(proc.pid)
        for c in psutil.net_connections(kind="inet"):
            if c.status == psutil.CONN_LISTEN and c.pid in ours:
                try:
                    name = psutil.Process(c.pid).name()
                except psutil.Error:
                    continue
                key = (c.laddr.ip, c.laddr.port, name)
                seen[key] = seen.get(key, 0) + 1
        samples += 1
        time.sleep(0.2)
    err = proc.stderr.read()
    print(f"distst {' '.join(args)}: exit {proc.returncode}, {samples} samples")
    if proc.returncode:
        print(err[-2000:])
    print("| address | port | process | samples |\n|---|---|---|---|")
    for (ip, port, name), n in sorted(seen.items(), key=lambda kv: (kv[0][2], kv[0][1])):
        print(f"| {ip} | {port} | {name} | {n} |")
    exposed = [k for k in seen if not _loopback(k[0])]
    print(f"{len(seen)} listening sockets, {len(exposed)} beyond loopback"
          + (f": {exposed}" if exposed else ""))
    return 1 if exposed or proc.returncode else 0


if __name__ == "__main__":
    sys.exit(main())
