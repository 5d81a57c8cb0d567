"""Run a study: each run of the grid is an ordinary training run (Ray Train, or the same
code a user trains with) with ``train.step_timing`` on, in order, skipping finished runs.

Layout of a study directory (``storage/name``, a folder or a URI)::

    study.yaml           the study and its base config (what --resume needs)
    runs/<run>/          each run's training folder (config, metrics, steps/rank_R.json)
    results/<run>.json   the run's per-worker figures; its presence marks the run finished
    runs.csv             one row per run x worker
    summary.md           scaling tables, time breakdown, memory, partition figures, the fitted
                         performance model and its predictions
    *.png                scaling.png (or weak_scaling.png), memory.png, breakdown.png and,
                         with accuracy over halo depths, accuracy.png (distst.scale.plots)

Figures per worker are medians over the timed steps (the warm-up steps dropped); a run's
step time is the median over steps of the slowest worker's step (a step ends for everyone
when the last worker's gradients are in).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from distst.config import PARTITIONED_MODES, fill_dataclass, read_saved_yaml
from distst.engine.logs import read_metrics_log
from distst.engine.timing import PHASES
from distst.engine.parallelize import plan_halo_hops
from distst.layout import Layout
from distst.errors import DiststError
from distst.scale.config import Study, StudyConfig, StudyRun, build_study
from distst.scale.model import PerfModel, fit_model, model_table
from distst.plots.study import plot_study
from distst.storage import Location, configure, is_uri, location

STUDY_FILE = "study.yaml"


@dataclass
class StudyResult:
    study_dir: Path | Location
    rows: list[dict]
    summary: str
    ran: list[str]
    skipped: list[str]
    model: PerfModel | None = None
    #: PNG file -> what it drew ({panel: {label: (x, y)}})
    plots: dict = dataclasses.field(default_factory=dict)


def study_dir_of(study: Study) -> Location:
    sc = study.cfg
    name = sc.name or f"study-{study.runs[0].cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    return location(sc.storage or "studies") / name


# -- what each run needs -------------------------------------------------------------------
def dry_run_table(study: Study) -> str:
    """The runs and what each needs per worker; the memory estimate is
    :func:`distst.scale.memory.worker_memory` (sensors per worker from the cached plan, else
    from the halo share of the real graphs at that part size)."""
    from distst.scale.memory import local_nodes, worker_memory

    lines = ["| run | " + " | ".join(study.cfg.grid) + " | workers | CPUs | GPUs | threads/worker "
             "| sensors/worker | windows/micro-batch | series MB/worker | est. peak MB/worker |",
             "|---" * (len(study.cfg.grid) + 9) + "|"]
    for r in study.runs:
        rt = r.cfg.runtime
        sizes = local_nodes(r.cfg)
        if sizes is None:
            d = r.cfg.data.path
            ready = not d or is_uri(d) or (Path(d) / "meta.json").is_file()
            # a study may be planned before its datasets are prepared; the run itself refuses
            nodes = series = est = held = "dataset" if ready else "not prepared yet"
        else:
            total, local, steps, how = sizes
            mem = worker_memory(r.cfg, total, local, steps)
            approx = "~" if how == "real graphs' halo" else ""
            nodes = f"{approx}{local:.0f}"
            series = f"{mem['series'] / 2**20:.1f}"
            est = f"{approx}{mem['total'] / 2**20:.0f}"
            held = str(mem["batch"])
        lines.append(
            f"| {r.name} | " + " | ".join(str(r.values.get(k, "-")) for k in study.cfg.grid)
            + f" | {rt.workers} | {rt.workers * rt.cpus_per_worker:g} | "
            f"{rt.workers * rt.gpus_per_worker if rt.use_gpu else 0:g} | "
            f"{r.cfg.train.threads or 'default'} | {nodes} | {held} | {series} | {est} |")
    lines += ["", "sensors/worker: the largest part with its halo (~: no plan cached yet, so the "
              "halo share is the real graphs' at that part size); est. peak: a worker with "
              "torch loaded + series + 16 B per parameter + 2.5 x the activations a probe "
              "forward keeps for backward, for the windows of one micro-batch (a worker's "
              "share of train.batch_size over train.micro_batches) under the run's "
              "train.recompute and train.precision (distst/scale/memory.py; within 6% of the "
              "measured GCGRU studies in benchmarks/RESULTS.md)"]
    if any(r.cfg.train.recompute == "step" and not r.cfg.runtime.use_gpu for r in study.runs):
        # measured (bench_models.py, CPU): peak RSS 3.9x the saved bytes for GCGRU and 8.2-8.3x
        # for DCRNN with recompute, against the 2.5x the estimate assumes
        lines.append("train.recompute=step on CPU: a lower bound. Recomputing in backward and "
                     "glibc's held heap took the measured peak to 4-8x the saved activations "
                     "(DCRNN at 8,600 sensors: 14.1 GB where this table says 4.8; "
                     "benchmarks/RESULTS.md); train.heap_slack_mib bounds the held heap")
    return "\n".join(lines)


def check_cluster(study: Study, cpus: float, gpus: float) -> None:
    """Refuse, before anything runs, a run the cluster cannot hold."""
    for r in study.runs:
        Layout.of(r.cfg).check_fits({"CPU": cpus, "GPU": gpus}, who=f"study run {r.name}")


# -- one run's figures ---------------------------------------------------------------------
def run_rows(run: StudyRun, run_dir: Location, warmup: int, quality: dict | None) -> list[dict]:
    """Per-worker figures of a finished run (medians over its timed steps)."""
    world = run.cfg.runtime.workers
    docs = []
    for rank in range(world):
        f = run_dir / "steps" / f"rank_{rank}.json"
        if not f.is_file():
            raise DiststError(f"study run {run.name}: {f} is missing; the run did not time "
                              "its steps (was train.step_timing turned off by an override?)")
        docs.append(json.loads(f.read_text()))
    timed = [[s for s in d["steps"] if s["step"] >= warmup] for d in docs]
    n = min(len(t) for t in timed)
    if n == 0:
        got = len(docs[0]["steps"])
        raise DiststError(
            f"study run {run.name}: it trained {got} steps, all of them warm-up "
            f"(warmup_steps={warmup}); the training split is too short for the step budget: "
            "use more days of data (data.synth.days) or a smaller train.batch_size")
    totals = [[sum(s[p] for p in PHASES) for s in t[:n]] for t in timed]
    run_step = statistics.median(max(col) for col in zip(*totals))
    metrics = {}
    test_file = run_dir / "test_metrics.json"
    if run.cfg.train.max_test_batches == 0 and test_file.is_file():
        final = json.loads(test_file.read_text())
        metrics["test_mae"] = final["test"]["avg"]["mae"]
    log = run_dir / "metrics.jsonl"
    if run.cfg.train.max_val_batches == 0 and log.is_file():
        recs = read_metrics_log(log)
        if recs:
            metrics["best_val_mae"] = min(r["val_mae"] for r in recs)
    from distst.scale.memory import local_nodes, worker_memory

    sizes = local_nodes(run.cfg)
    rows = []
    for d, t, tot in zip(docs, timed, totals):
        local, inner = d["local_nodes"], d["inner_nodes"]
        est = (worker_memory(run.cfg, sizes[0], local, sizes[2])["total"] / 2**20
               if sizes else "")
        row = {"run": run.name, **{k: v for k, v in run.values.items()},
               "mode": d["mode"], "workers": world, "graph_nodes": d["global_nodes"],
               "rank": d["rank"], "node": d.get("node", ""), "device": d["device"],
               "threads": d["threads"], "timed_steps": n,
               "step_s": statistics.median(tot), "run_step_s": run_step}
        for p in PHASES:
            row[f"{p}_s"] = statistics.median(s[p] for s in t[:n])
        wps = d["windows_per_step"] / run_step
        row.update({
            "windows_per_s": wps, "node_windows_per_s": wps * d["global_nodes"],
            "windows_per_step": d["windows_per_step"],
            "worker_node_windows_per_step": d["worker_windows_per_step"] * local,
            "payload_bytes_per_step": statistics.median(s["payload_bytes"] for s in t[:n]),
            # gradient all-reduce plus, in exchange mode, the boundary exchanges
            "sent_bytes_per_step": statistics.median(s["sent_bytes"] + s.get("exchange_bytes", 0)
                                                     for s in t[:n]),
            "exchange_bytes_per_step": statistics.median(s.get("exchange_bytes", 0)
                                                         for s in t[:n]),
            "peak_rss_mb": d["peak_rss_bytes"] / 2**20, "est_peak_mb": est,
            "cuda_max_allocated_mb": (d["cuda_max_allocated_bytes"] / 2**20
                                      if d["cuda_max_allocated_bytes"] is not None else ""),
            "inner_nodes": inner, "local_nodes": local,
            "halo_share": (local - inner) / local if local else 0.0,
            "halo_hops": (plan_halo_hops(run.cfg)
                          if d["mode"] in PARTITIONED_MODES else ""),
            "parameters": d["parameters"],
            "cut_fraction": quality["cut_fraction"] if quality else "",
            "replication": quality["replication"] if quality else "",
            "best_val_mae": metrics.get("best_val_mae", ""),
            "test_mae": metrics.get("test_mae", ""),
        })
        rows.append(row)
    return rows


def plan_quality(cfg, plan: str) -> dict | None:
    """The cut figures a plan's META.json records (a remote plan: its mirrored META)."""
    from distst.engine.provision import cache_root
    from distst.graph.partition.plan import load_plan, plan_mirror

    src = location(plan)
    local = src.local if src.is_local else plan_mirror(plan, cache_root(cfg.data) / "fetched")
    return load_plan(local).quality


# -- the study -----------------------------------------------------------------------------
def run_study(study: Study, resume: bool = False, study_dir: str | Path | Location | None = None,
              dry_run: bool = False, address: str = "") -> StudyResult:
    """Run (or with ``resume``, continue) ``study``; with ``dry_run`` only print the runs."""
    from distst.engine.provision import ensure_dataset, ensure_plan
    from distst.engine.entry import shown
    from distst.runtime.ray_train import connect, train_ray, wait_for_room

    sc = study.cfg
    configure(study.runs[0].cfg.runtime.storage_options)
    sdir = location(study_dir) if study_dir else study_dir_of(study)
    table = dry_run_table(study)
    if dry_run:
        print(f"study {sdir}: {len(study.runs)} runs\n\n{table}", flush=True)
        return StudyResult(shown(sdir), [], table, [], [])
    if not resume and (sdir / STUDY_FILE).exists():
        raise DiststError(f"study directory {sdir} already holds a study; continue it with "
                          f"'distst scale --resume {sdir}' or set another name (--set name=...)")
    connect(address or sc.address or study.runs[0].cfg.runtime.address)
    # room for the largest run (an autoscaling cluster may start with none): runs go one by one
    big = max((Layout.of(r.cfg) for r in study.runs),
              key=lambda lay: tuple(sorted(lay.total_resources.items())))
    total, _ = wait_for_room(big.total_resources, [big.resources_per_worker] * big.world_size,
                             study.runs[0].cfg.runtime.node_wait_s, f"study {sdir.name}")
    check_cluster(study, total.get("CPU", 0.0), total.get("GPU", 0.0))
    sdir.mkdir()
    if not resume:
        saved = {"study": {**dataclasses.asdict(sc), "overrides": []}, "base": study.base_raw}
        (sdir / STUDY_FILE).write_text(yaml.safe_dump(saved, sort_keys=False))
    print(f"study directory: {sdir}\n{len(study.runs)} runs:\n{table}", flush=True)
    ran, skipped, rows = [], [], []
    for run in study.runs:
        done = sdir / "results" / f"{run.name}.json"
        if done.is_file():
            skipped.append(run.name)
            rows += json.loads(done.read_text())["rows"]
            continue
        cfg = run.cfg
        cfg.runtime.storage, cfg.runtime.name = str(sdir / "runs"), run.name
        quality = None
        if cfg.runtime.partitioned:
            # the plan is made (or found in the cache) here, so its cut figures are known
            cfg.partition.plan = str(ensure_plan(cfg, ensure_dataset(cfg.data)))
            quality = plan_quality(cfg, cfg.partition.plan)
        run_dir = sdir / "runs" / run.name
        if run_dir.exists():  # an earlier attempt stopped mid-run: its steps are not kept
            run_dir.rmtree()
        print(f"\n== study run {run.name} ({cfg.runtime.mode}, {cfg.runtime.workers} workers)",
              flush=True)
        train_ray(cfg)
        got = run_rows(run, run_dir, 0 if sc.epochs else sc.warmup_steps, quality)
        done.write_text(json.dumps({"run": run.name, "rows": got}, indent=1))
        rows += got
        ran.append(run.name)
    runs = per_run(rows)
    model = fit_model(runs)
    summary = write_outputs(sdir, study, rows, runs, model)
    plots = plot_study(sdir, runs, list(sc.grid), "nodes_per_worker" in sc.grid)
    print(f"\n{summary}\n\nplots: {', '.join(plots)}\nstudy directory: {sdir}", flush=True)
    return StudyResult(shown(sdir), rows, summary, ran, skipped, model, plots)


def resume_study(study_dir: str | Path, address: str = "") -> StudyResult:
    sdir = location(study_dir)
    f = sdir / STUDY_FILE
    if not f.is_file():
        raise DiststError(f"{sdir} is not a study directory (no {STUDY_FILE}); pass the folder "
                          "'distst scale' printed as 'study directory: ...'")
    saved = read_saved_yaml(f, ("study", "base"), "study file",
                            "pass a study folder that distst scale wrote")
    sc = fill_dataclass(StudyConfig, saved["study"])
    study = build_study(sc, saved["base"], source=str(f))
    return run_study(study, resume=True, study_dir=sdir, address=address)


def redraw(study_dir: str | Path | Location) -> dict:
    """Draw a study's plots again from its finished runs (``distst plot STUDY_DIR``)."""
    sdir = location(study_dir)
    saved = read_saved_yaml(sdir / STUDY_FILE, ("study",), "study file",
                            "pass a study folder that distst scale wrote")
    grid = list((saved["study"].get("grid") or {}))
    rows = []
    for f in (sdir / "results").glob("*.json"):
        rows += json.loads(f.read_text())["rows"]
    if not rows:
        raise DiststError(f"study {sdir} has no finished run yet; continue it with "
                          f"distst scale --resume {sdir}")
    return plot_study(sdir, per_run(rows), grid, "nodes_per_worker" in grid)


# -- outputs -------------------------------------------------------------------------------
def write_outputs(sdir: Location, study: Study, rows: list[dict], runs: list[dict],
                  model: PerfModel | None) -> str:
    """runs.csv from the per-worker ``rows``, summary.md from the per-run ``runs``."""
    buf = io.StringIO()
    if rows:
        names = list(dict.fromkeys(k for r in rows for k in r))
        w = csv.DictWriter(buf, fieldnames=names, restval="")
        w.writeheader()
        w.writerows(rows)
    (sdir / "runs.csv").write_text(buf.getvalue())
    summary = format_summary(study, runs, model)
    (sdir / "summary.md").write_text(summary + "\n")
    return summary


def per_run(rows: list[dict]) -> list[dict]:
    """One record per run: the slowest worker's step, medians of the phases over workers,
    the largest memory of any worker."""
    out = {}
    for r in rows:
        out.setdefault(r["run"], []).append(r)
    runs = []
    for ws in out.values():
        first = ws[0]
        rec = {k: first[k] for k in first if k not in ("rank", "node")}
        for p in PHASES:
            rec[f"{p}_s"] = statistics.median(w[f"{p}_s"] for w in ws)
        rec["peak_rss_mb"] = max(w["peak_rss_mb"] for w in ws)
        est = [w.get("est_peak_mb", "") for w in ws]
        rec["est_peak_mb"] = max(est) if "" not in est else ""
        cuda = [w["cuda_max_allocated_mb"] for w in ws if w["cuda_max_allocated_mb"] != ""]
        rec["cuda_max_allocated_mb"] = max(cuda) if cuda else ""
        rec["halo_share"] = statistics.mean(w["halo_share"] for w in ws)
        rec["worker_node_windows_per_step"] = max(w["worker_node_windows_per_step"] for w in ws)
        rec["sent_bytes_per_step"] = max(w["sent_bytes_per_step"] for w in ws)
        rec["exchange_bytes_per_step"] = max(w.get("exchange_bytes_per_step", 0) for w in ws)
        runs.append(rec)
    return runs


def scaling_key(rec: dict, grid: list[str]) -> tuple:
    """What a run is compared within: every grid value but the number of workers."""
    skip = {"runtime.workers", "partition.parts", "nodes_per_worker"}
    return tuple((k, str(rec.get(k))) for k in grid if k not in skip) + (("mode", rec["mode"]),)


def cut_reference() -> dict:
    """How METIS cuts the real graphs (``cut_reference.json``, written by
    scripts/make_cut_reference.py from the graphs in ../shared/data)."""
    return json.loads((Path(__file__).with_name("cut_reference.json")).read_text())


def real_cuts_at(nodes_per_part: float, halo_hops: int) -> list[dict]:
    """For each real graph, its METIS partition whose mean part size is nearest
    ``nodes_per_part`` (within a factor of 1.5), with the same halo depth."""
    out = []
    for name, g in cut_reference()["graphs"].items():
        rows = [r for r in g["rows"] if r["halo_hops"] == halo_hops]
        if not rows:
            continue
        best = min(rows, key=lambda r: abs(math.log(r["nodes_per_part"] / nodes_per_part)))
        if abs(math.log(best["nodes_per_part"] / nodes_per_part)) <= math.log(1.5):
            out.append({"graph": name, "nodes": g["nodes"], **best})
    return out


def cut_comparison(runs: list[dict]) -> list[str]:
    """The study's partitions beside the real graphs' at the same sensors per part."""
    shard = [r for r in runs if r["mode"] in PARTITIONED_MODES and r["cut_fraction"] != ""
             and r["workers"] > 1]
    if not shard:
        return []
    out = ["", "## Cut against the real graphs at the same sensors per part", "",
           "METIS on the study's graph and on the real sensor graphs (METR-LA, PEMS-BAY, "
           "PeMSD7(M), PEMS07, PEMS08) cut into parts of about the same size, same halo depth: "
           "a study says something about real deployments when its cut and halo share are "
           "like theirs.", "",
           "| run | sensors per part | halo hops | edge cut | halo share | replication | real "
           "graphs at that part size: edge cut / halo share / replication |",
           "|---|---|---|---|---|---|---|"]
    seen = set()
    for r in shard:
        hops = int(r["halo_hops"])
        key = (r["graph_nodes"], r["workers"], hops)
        if key in seen:
            continue
        seen.add(key)
        per_part = r["graph_nodes"] / r["workers"]
        real = real_cuts_at(per_part, hops)
        cells = "; ".join(f"{x['graph']} P={x['parts']}: {100 * x['cut_fraction']:.1f}% / "
                          f"{100 * x['halo_share']:.1f}% / {x['replication']:.2f}"
                          for x in real) or "no real graph has parts that size"
        out.append(f"| {r['run']} | {per_part:.0f} | {hops} | {100 * r['cut_fraction']:.2f}% | "
                   f"{100 * r['halo_share']:.1f}% | {r['replication']:.3f} | {cells} |")
    return out


def seed_table(runs: list[dict], grid: list[str]) -> list[str]:
    """Test MAE over the seeds of a grid over ``train.seed``: mean and sample standard
    deviation per setting (every grid value but the seed), ordered as the grid ran them."""
    if "train.seed" not in grid:
        return []
    rest = [k for k in grid if k != "train.seed"]
    groups: dict = {}
    for r in runs:
        if isinstance(r["test_mae"], float):
            key = (r["mode"], r["workers"],
                   *("-" if r.get(k) in (None, "") else str(r[k]) for k in rest))
            groups.setdefault(key, []).append(r)
    if not any(len(g) > 1 for g in groups.values()):
        return []
    out = ["", "### Over seeds", "",
           "Mean and sample standard deviation over the seeds that finished; halo share as "
           "above (worker mean).", "",
           "| mode | workers | " + "".join(f"{k} | " for k in rest) + "halo share | seeds "
           "| best val MAE | test MAE |", "|---" * (len(rest) + 6) + "|"]

    def spread(vals):
        if len(vals) < 2:
            return f"{vals[0]:.3f}"
        return f"{statistics.mean(vals):.3f} ± {statistics.stdev(vals):.3f}"

    for (mode, workers, *vals), recs in groups.items():
        share = statistics.mean(r["halo_share"] for r in recs)
        val = [r["best_val_mae"] for r in recs if isinstance(r["best_val_mae"], float)]
        out.append(f"| {mode} | {workers} | " + "".join(f"{v} | " for v in vals)
                   + f"{100 * share:.1f}% | {len(recs)} | {spread(val) if val else '-'} | "
                   f"{spread([r['test_mae'] for r in recs])} |")
    return out


def format_summary(study: Study, runs: list[dict], model: PerfModel | None) -> str:
    """summary.md from the per-run records (:func:`per_run`)."""
    grid = list(study.cfg.grid)
    weak = "nodes_per_worker" in grid
    sc = study.cfg
    steps = (f"{sc.timed_steps} timed steps after {sc.warmup_steps} warm-up steps"
             if not sc.epochs else f"{sc.epochs} epochs, every step after the first "
             f"{sc.warmup_steps} timed")
    out = [f"# Scaling study {sc.name or ''}".rstrip(), "",
           f"{len(runs)} runs of {steps}; the driver's machine has {os.cpu_count()} CPU cores. "
           "Figures are medians over the timed steps; a run's step is its slowest worker's.",
           ""]
    # columns the tables show anyway (mode, workers) are not repeated from the grid
    grid = [k for k in grid if k not in ("runtime.workers", "partition.parts", "runtime.mode",
                                         "nodes_per_worker")]
    # -- scaling
    groups = {}
    for rec in runs:
        groups.setdefault(scaling_key(rec, grid), []).append(rec)
    scaled = any(len({r["workers"] for r in recs}) > 1 for recs in groups.values())
    out += [f"## {'Weak' if weak else 'Strong'} scaling" if scaled else "## Runs", "",
            ("Same sensors per worker (graph grows with the workers): efficiency = T(base) / T."
             if weak else "Same graph and global batch: speedup = T(base) / T, efficiency = "
             "speedup x base workers / workers.") if scaled else
            "No run differs from another in workers alone, so speedup and efficiency are 1 "
            "by definition; the step times compare the grid's settings.", "",
            "| run | " + "".join(f"{k} | " for k in grid) + "mode | workers | sensors | step ms "
            "| windows/s | node-windows/s | speedup | efficiency |",
            "|---" * (len(grid) + 9) + "|"]
    for recs in groups.values():
        recs.sort(key=lambda r: r["workers"])
        base = recs[0]
        for r in recs:
            speed = base["run_step_s"] / r["run_step_s"]
            eff = speed if weak else speed * base["workers"] / r["workers"]
            r["speedup"], r["efficiency"] = (None if weak else speed), eff
            out.append(
                f"| {r['run']} | " + "".join(f"{r.get(k)} | " for k in grid)
                + f"{r['mode']} | {r['workers']} | {r['graph_nodes']} | "
                f"{1000 * r['run_step_s']:.1f} | {r['windows_per_s']:.1f} | "
                f"{r['node_windows_per_s']:.3g} | "
                + (f"{speed:.2f}" if not weak else "-") + f" | {eff:.2f} |")
    # -- breakdown
    out += ["", "## Where a step's time goes", "",
            "Median per worker, in ms and as a share of the run's step; `idle` is the wait for "
            "the slowest worker, `allreduce` the gradient all-reduce after it (not overlapped "
            "with the backward pass in timed steps: see distst.engine.timing); exchange mode's "
            "boundary exchanges run inside forward and backward, and their bytes are in the "
            "last column.", "",
            "| run | workers | " + " | ".join(PHASES) + " | KB sent / step / worker (of it "
            "boundary exchange) |",
            "|---" * (len(PHASES) + 3) + "|"]
    for r in runs:
        cells = [f"{1000 * r[f'{p}_s']:.1f} ({100 * r[f'{p}_s'] / r['run_step_s']:.0f}%)"
                 for p in PHASES]
        ex = r.get("exchange_bytes_per_step", 0)
        out.append(f"| {r['run']} | {r['workers']} | " + " | ".join(cells)
                   + f" | {r['sent_bytes_per_step'] / 1024:.1f}"
                   + (f" ({ex / 1024:.1f})" if ex else "") + " |")
    # -- memory and partition
    out += ["", "## Memory and partition per worker", "",
            "| run | mode | workers | peak RSS MB (largest worker) | estimated MB (--dry-run's "
            "model) | CUDA max allocated MB | inner + halo sensors (worker 0) | halo share | "
            "edge cut | replication |",
            "|---" * 10 + "|"]
    for r in runs:
        cut = f"{100 * r['cut_fraction']:.2f}%" if r["cut_fraction"] != "" else "-"
        rep = f"{r['replication']:.3f}" if r["replication"] != "" else "-"
        cuda = f"{r['cuda_max_allocated_mb']:.0f}" if r["cuda_max_allocated_mb"] != "" else "-"
        est = f"{r['est_peak_mb']:.0f}" if r.get("est_peak_mb", "") != "" else "-"
        out.append(f"| {r['run']} | {r['mode']} | {r['workers']} | {r['peak_rss_mb']:.0f} | "
                   f"{est} | {cuda} | {r['local_nodes']} | {100 * r['halo_share']:.1f}% | {cut} | {rep} |")
    out += cut_comparison(runs)
    if any(r["test_mae"] != "" for r in runs):
        out += ["", "## Accuracy", "", "| run | mode | workers | halo share | best val MAE "
                "| test MAE |", "|---" * 6 + "|"]
        for r in runs:
            cells = [f"{v:.3f}" if isinstance(v, float) else "-"
                     for v in (r["best_val_mae"], r["test_mae"])]
            out.append(f"| {r['run']} | {r['mode']} | {r['workers']} | "
                       f"{100 * r['halo_share']:.1f}% | {cells[0]} | {cells[1]} |")
        out += seed_table(runs, grid)
    out += ["", "## Performance model", ""] + model_table(model, runs)
    return "\n".join(out)


__all__ = ["StudyResult", "run_study", "resume_study", "run_rows", "dry_run_table",
           "check_cluster", "format_summary", "per_run"]
