"""Forecasting throughput: `distst predict` against `distst evaluate` on the same windows, and a
bounded load test of `distst serve` on loopback.

    python scripts/bench_forecasts.py [--run RUN] [--requests 2000] [--concurrency 16]
    python scripts/bench_forecasts.py --layout

``--layout``: the quickstart trained a few steps in shard and in exchange mode (2 parts, Ray
Train) and `distst predict --split test` through the run's own parts (one Ray worker each,
Ray Train's start included) against ``--whole`` (one process), on the same machine.

Without ``--run`` it trains the quickstart model (GCGRU, 1,026 sensors) for a few steps into
a temp folder: the model's size, not its accuracy, sets the costs measured here. The load
test posts one window per request (JSON, about 150 kB at 1,026 sensors) from
``--concurrency`` client threads on this machine, so client and service share its cores;
every answer is checked for status 200 and a sample against `distst predict`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _train(tmp: Path) -> Path:
    from distst.cli import main

    sets = [f"runtime.storage={tmp / 'runs'}", "runtime.name=q", "train.epochs=1",
            "train.max_batches_per_epoch=3", "train.max_val_batches=1",
            "train.max_test_batches=1", "train.progress=false"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "configs/quickstart.yaml", "--local",
                     *[a for kv in sets for a in ("--set", kv)]]) == 0
    return tmp / "runs" / "q"


def _train_layout(tmp: Path, mode: str) -> Path:
    from distst.cli import main

    sets = [f"runtime.storage={tmp / 'runs'}", f"runtime.name={mode}", f"runtime.mode={mode}",
            "train.epochs=1", "train.max_batches_per_epoch=3", "train.max_val_batches=1",
            "train.max_test_batches=1", "train.progress=false"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "configs/quickstart.yaml",
                     *[a for kv in sets for a in ("--set", kv)]]) == 0
    return tmp / "runs" / mode


def bench_layout(tmp: Path, repeat: int = 3) -> dict:
    """Forecasts of the test split through the run's parts (Ray) and of the whole graph."""
    from distst.engine.predict import forecast_job
    from distst.runtime.ray_train import connect, predict_ray

    out = {}
    for mode in ("shard", "exchange"):
        run = _train_layout(tmp, mode)
        connect("")
        res = {}
        for name, layout in (("parts", True), ("whole", False)):
            def once():
                job = forecast_job(run, split="test", layout=layout)
                with contextlib.redirect_stdout(io.StringIO()):
                    fc = (predict_ray(job) if job.plan_dir else job.assemble([job.piece()]))
                res[name + "_values"] = fc.values
                return fc

            t = _timed(once, repeat)
            windows = res[name + "_values"].shape[0]
            res[name] = {"windows": windows, "s": t, "wps": windows / t}
        diff = float(np.abs(res.pop("parts_values") - res.pop("whole_values")).max())
        out[mode] = {**res, "max_diff_parts_vs_whole": diff}
        print(json.dumps({mode: out[mode]}), flush=True)
    return out


def _timed(fn, repeat=3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_predict(run: Path) -> dict:
    from distst.engine.entry import evaluate_checkpoint, restore_best
    from distst.engine.predict import predict

    windows = len(restore_best(run).bundle.splits["test"])
    with contextlib.redirect_stdout(io.StringIO()):
        t_eval = _timed(lambda: evaluate_checkpoint(run))
        t_pred = _timed(lambda: predict(run, split="test"))
    return {"windows": windows, "evaluate_s": t_eval, "predict_s": t_pred,
            "evaluate_wps": windows / t_eval, "predict_wps": windows / t_pred}


def bench_serve(run: Path, requests: int, concurrency: int, threads: int,
                access_log: bool = False) -> dict:
    import socket

    from distst.engine.entry import restore_best
    from distst.engine.predict import predict
    from distst.runtime.ray_train import connect
    from distst.serve.app import serve_run, stop

    net = restore_best(run).bundle.network
    ts = np.asarray(net.timestamps, np.int64)
    ends = np.arange(len(ts) - 200, len(ts))  # 200 distinct windows, cycled
    bodies = []
    for e in ends:
        rows = np.arange(e - 11, e + 1)
        v = np.asarray(net.values[rows], np.float32)
        bodies.append(json.dumps({"values": np.where(np.isnan(v), None, v).tolist(),
                                  "timestamps": [int(t) for t in ts[rows]]}).encode())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connect("")
    url = serve_run(str(run), port=port, threads=threads, access_log=access_log) + "/forecast"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(url.replace("/forecast", "/healthz"), timeout=5):
                    break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.5)
        lat, errors, answers, lock = [], [], {}, threading.Lock()

        def one(i):
            body = bodies[i % len(bodies)]
            req = urllib.request.Request(url, data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    out = r.read()
                    ok = r.status == 200
            except Exception as e:  # noqa: BLE001 - counted, reported
                ok, out = False, str(e).encode()
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                if not ok:
                    errors.append(out[:200])
                elif i < len(bodies) and i % 50 == 0:
                    answers[i] = out

        for i in range(32):  # warm-up, not counted
            one(10_000 + i)
        lat.clear()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(requests)))
        wall = time.perf_counter() - t0
        # answers equal distst predict's for the same windows
        at = [str(np.datetime64(int(ts[ends[i]]), "ns")) for i in answers]
        want = predict(run, at=at).values
        worst = max(float(np.abs(np.asarray(json.loads(answers[i])["forecasts"][0]["values"],
                                            np.float32) - want[k]).max())
                    for k, i in enumerate(answers))
    finally:
        stop()
    lat_ms = np.asarray(lat) * 1000
    return {"requests": requests, "concurrency": concurrency, "errors": len(errors),
            "p50_ms": float(np.percentile(lat_ms, 50)), "p99_ms": float(np.percentile(lat_ms, 99)),
            "throughput_rps": requests / wall, "wall_s": wall, "checked": len(answers),
            "max_diff_vs_predict": worst, "first_errors": errors[:3]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the replica")
    ap.add_argument("--access-log", action="store_true", help="the replica logs every request")
    ap.add_argument("--layout", action="store_true",
                    help="predict through a shard and an exchange run's parts against --whole")
    args = ap.parse_args()
    if args.layout:
        with tempfile.TemporaryDirectory(prefix="bench-forecasts-") as tmp:
            bench_layout(Path(tmp))
        return
    with tempfile.TemporaryDirectory(prefix="bench-forecasts-") as tmp:
        run = Path(args.run) if args.run else _train(Path(tmp))
        pred = bench_predict(run)
        print(json.dumps({"predict": pred}, indent=1), flush=True)
        served = bench_serve(run, args.requests, args.concurrency, args.threads,
                             args.access_log)
        print(json.dumps({"serve": served}, indent=1), flush=True)


if __name__ == "__main__":
    main()
