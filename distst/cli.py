"""`distst` command line: data | partition | train | evaluate | tune.

Every user error is a :class:`DiststError`, printed as one line on stderr with exit code 2.
"""

from __future__ import annotations

import argparse
import errno
import json
import re
import sys

from distst.errors import DiststError


# -- output --------------------------------------------------------------------------------
def format_metrics_table(final: dict) -> str:
    """Rows per horizon (15/30/60 min and avg), MAE/RMSE/MAPE of the model next to HA."""
    test = final.get("test", {})
    ha = final.get("ha", {})
    model = final.get("model", "model")
    cols = [f"{model} MAE", f"{model} RMSE", f"{model} MAPE%"]
    if ha:
        cols += ["HA MAE", "HA RMSE", "HA MAPE%"]
    lines = ["| horizon | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for horizon, vals in test.items():
        row = [f"{vals['mae']:.3f}", f"{vals['rmse']:.3f}", f"{vals['mape']:.2f}"]
        if ha and horizon in ha:
            h = ha[horizon]
            row += [f"{h['mae']:.3f}", f"{h['rmse']:.3f}", f"{h['mape']:.2f}"]
        lines.append(f"| {horizon} | " + " | ".join(row) + " |")
    return "\n".join(lines)


# -- verbs ---------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace) -> int:
    from distst.config import load_config

    overrides = list(args.set or [])
    if args.workers is not None:
        overrides.append(f"runtime.workers={args.workers}")
    if args.address:
        overrides.append(f"runtime.address={args.address}")
    if args.local:
        overrides.append("runtime.mode=local")
    cfg = load_config(args.config, overrides)
    if cfg.runtime.mode == "local":
        from distst.engine.entry import train_local

        run_dir, final = train_local(cfg, resume_from=args.resume)
    else:
        from distst.runtime.ray_train import train_ray

        run_dir, final = train_ray(cfg, resume_from=args.resume)
    print()
    print(f"test split, {final.get('model', cfg.model.name)} vs historical average:")
    print(format_metrics_table({"model": cfg.model.name, **final}))
    print(f"\nrun directory: {run_dir}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from distst.engine.entry import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, split=args.split)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"{res['model']} at epoch {res['epoch']} from {res['checkpoint']}, {args.split} split:")
        print(format_metrics_table({"model": res["model"], "test": res[args.split]}))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from distst.engine.predict import forecast_job, write_table

    job = forecast_job(args.run, data=args.data, at=args.at, last=args.last, split=args.split,
                       layout=not args.whole)
    if job.plan_dir is not None:
        from distst.runtime.ray_train import predict_ray

        fc = predict_ray(job, args.address)
    else:
        fc = job.assemble([job.piece()])
    fmt = write_table(fc, args.out, args.format)
    w, h, n, _ = fc.values.shape
    gaps = int((fc.gaps > 0).sum())
    print(f"{fc.model}: {w} window(s) x {h} horizon steps x {n} sensors = {w * h * n} "
          f"forecasts ({', '.join(fc.channels)}) written to {args.out} ({fmt})"
          + (f"; {gaps} window-sensor pair(s) had missing input (column input_gaps)"
             if gaps else ""))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from distst.engine.export import PROGRAM, export_run

    meta = export_run(args.run, args.out)
    print(f"{meta['model']} (epoch {meta['epoch']}) exported to {args.out}: {PROGRAM} "
          f"(TorchScript: values [B, {meta['input_len']}, {meta['num_nodes']}, "
          f"{len(meta['channels'])}] and int64 timestamps [B, {meta['input_len']}] in, "
          f"[B, {meta['horizon']}, {meta['num_nodes']}, {len(meta['target_channels'])}] out) "
          "and meta.json")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import time

    from distst.engine.checkpoint import load_checkpoint
    from distst.runtime.ray_train import connect
    from distst.serve.app import serve_run, stop

    load_checkpoint(args.run)  # a missing or damaged run is one line here, not a dead replica
    connect(args.address or "")
    url = serve_run(args.run, host=args.host, port=args.port, replicas=args.replicas,
                    cpus_per_replica=args.cpus_per_replica, threads=args.threads,
                    access_log=args.access_log)
    print(f"serving {args.run} at {url}: POST {url}/forecast (JSON or Arrow), GET "
          f"{url}/metadata, GET {url}/healthz; Ctrl-C stops it", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping the service", flush=True)
    finally:
        stop()
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    from distst.graph.partition.plan import META_NAME, make_plan
    from distst.graph.partition.quality import format_quality_table
    from distst.storage import is_uri, location, output_dir

    src, source = location(args.data_dir), None
    if src.is_local:
        data_dir = src.local
    else:
        from distst.config import DataConfig
        from distst.engine.provision import fetch_dataset

        data_dir, source = fetch_dataset(DataConfig(path=args.data_dir))[0], args.data_dir
    with output_dir(args.out, META_NAME, "partition plan") as out:
        _, _, quality = make_plan(data_dir, out, method=args.method, parts=args.parts,
                                  halo_hops=args.halo_hops, seed=args.seed, source=source,
                                  order=args.order)
    print(format_quality_table(quality))
    print(f"\nplan written to {args.out if is_uri(args.out) else out}")
    return 0



def _parse_options(pairs: list[str]) -> dict:
    from distst.config import load_yaml

    out = {}
    for text in pairs or []:
        if "=" not in text:
            raise DiststError(f"--opt {text!r} must look like key=value, e.g. --opt zero_is_missing=false")
        k, v = text.split("=", 1)
        out[k.strip()] = load_yaml(v, f"--opt {text!r}")
    return out


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from distst.data.formats import DOCUMENTED_START, parse_start, read_dataset
    from distst.data.network import save_network

    opts = _parse_options(args.opt)
    if args.series:
        opts["series"] = args.series
    if args.graph:
        opts["graph"] = args.graph
    if args.start is not None:
        if args.format not in DOCUMENTED_START:
            raise DiststError(f"--start: format {args.format!r} reads its timestamps from its "
                              f"files; --start applies to {', '.join(DOCUMENTED_START)}")
        opts["start"] = parse_start(args.start, "--start").isoformat()
    from distst.storage import is_uri, output_dir

    # the output is claimed before the (long) read: a second prepare into it is refused now
    with output_dir(args.out, "meta.json", "dataset") as staged:
        net = read_dataset(args.format, args.path, **opts)
        _report_read(args, net)
        out = save_network(net, staged, inputs=[args.path])
    print(f"wrote {net.num_nodes} nodes x {net.num_steps} steps x {net.num_channels} channels, "
          f"{net.num_edges} edges to {args.out if is_uri(args.out) else out}")
    return 0


def _report_read(args: argparse.Namespace, net) -> None:
    """What prepare says about what it read: where the times start, gaps, implausible
    values, a graph without edges."""
    import pandas as pd

    src = net.source
    if "start_from" in src:
        if src["start_from"] != "given":
            how = f"the documented default for {args.format}; set another with --start"
        else:
            how = "from --start" if args.start is not None else "from --opt start"
        print(f"start: {pd.Timestamp(src['start'])} ({how})")
    elif net.num_steps:
        print(f"start: {pd.Timestamp(int(net.timestamps[0]))} (from the file's timestamps)")
    if "gaps" in src:
        g = src["gaps"]
        print(f"note: the series skips {g['filled_steps']:,} step(s) of {g['step_minutes']:g} min "
              f"in {g['gaps']:,} gap(s), the longest from {g['longest'][0]} to "
              f"{g['longest'][1]}; they are stored as missing readings, so windows see a gap "
              "as missing data, not as consecutive steps", file=sys.stderr)
    _warn_implausible(net.summary()["implausible"])
    from distst.graph.adjacency import linked_edges

    if not linked_edges(net.edge_index, net.edge_weight):
        print(f"WARNING: the graph has no edge between two sensors ({net.num_edges} edges, all "
              "self-loops or weight 0): graph models would degenerate to per-node models, and "
              "'distst train' refuses them on this dataset unless data.allow_empty_graph=true. "
              "Check the graph file and its options (threshold, matrix kind).", file=sys.stderr)


def cmd_data_synth(args: argparse.Namespace) -> int:
    from distst.storage import is_uri, output_dir

    with output_dir(args.out, "meta.json", "synthetic dataset") as staged:
        what = _synth(args, staged)
    print(f"wrote {what} to {args.out if is_uri(args.out) else staged}")
    return 0


def _synth(args: argparse.Namespace, out) -> str:
    if args.grid:
        from distst.data.grid import generate_grid_network
        from distst.data.network import save_network

        try:
            h, w = (int(v) for v in args.grid.lower().split("x"))
        except ValueError:
            raise DiststError(f"--grid {args.grid!r}: expected HEIGHTxWIDTH, e.g. 32x32") \
                from None
        save_network(generate_grid_network(h, w, args.days, seed=args.seed,
                                            step_minutes=args.step_minutes or 60), out)
        return f"synthetic {h} x {w} flow grid ({args.days} days)"
    from distst.data.synth import generate_network

    generate_network(out, num_nodes=args.nodes, days=args.days, seed=args.seed,
                     graph=args.graph)
    return f"synthetic network ({args.nodes} nodes, {args.days} days)"


def cmd_data_info(args: argparse.Namespace) -> int:
    from distst.data.network import load_network
    from distst.storage import is_remote, location

    where = args.dir
    if is_remote(where):  # read through the node cache, as a run would
        from distst.config import DataConfig
        from distst.engine.provision import fetch_dataset

        data = DataConfig(path=where)
        if args.cache_dir:
            data.cache_dir = args.cache_dir
        where = fetch_dataset(data, quiet=True)[0]
    info = load_network(location(where).local).summary()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    implausible = info.pop("implausible")
    width = max(len(k) for k in info)
    for k, v in info.items():
        if isinstance(v, float):
            v = f"{v:.4f}"
        elif k in ("min", "max", "mean"):
            v = ", ".join("(no observed value)" if x is None else f"{x:.3f}" for x in v)
        print(f"{k:<{width}}  {v}")
    _warn_implausible(implausible)
    return 0


def _warn_implausible(lines: list[str]) -> None:
    for line in lines:
        print(f"WARNING: implausible values: {line}; check the source file's units and "
              "parsing, or blank those cells (empty = missing)", file=sys.stderr)


def cmd_tune(args: argparse.Namespace) -> int:
    if args.resume:
        if args.sweep or args.set:
            raise DiststError("--resume RUN_DIR continues a sweep as it was started; drop the "
                              "sweep file and --set (a new sweep needs a new name instead)")
        from distst.sweep.driver import resume_sweep

        res = resume_sweep(args.resume, address=args.address or "",
                           progress=not args.no_progress)
    else:
        if not args.sweep:
            raise DiststError("distst tune needs a sweep file (e.g. configs/sweeps/gcgru.yaml) "
                              "or --resume RUN_DIR")
        from distst.sweep.config import load_sweep
        from distst.sweep.driver import run_sweep

        overrides = list(args.set or [])
        if args.address:
            overrides.append(f"address={args.address}")
        res = run_sweep(load_sweep(args.sweep, overrides), progress=not args.no_progress)
    print()
    print(f"{res.counts.get('trials', 0)} trials ({res.counts.get('stopped_early', 0)} "
          f"stopped early, {res.counts.get('errors', 0)} failed), best first:")
    print(res.table)
    if res.best is not None:
        print(f"\nbest trial {res.best['trial']}: config written to {res.best_config} "
              f"(run it with: distst train {res.best_config})")
        print("test split, the best trial's best model:")
        print(format_metrics_table({"model": res.test["model"], "test": res.test["test"]}))
    print(f"\nsweep directory: {res.sweep_dir}")
    return 0 if res.best is not None else 1


def cmd_scale(args: argparse.Namespace) -> int:
    if args.resume:
        if args.study or args.set or args.dry_run:
            raise DiststError("--resume STUDY_DIR continues a study as it was started; drop the "
                              "study file, --set and --dry-run (a new study needs a new name)")
        from distst.scale.driver import resume_study

        res = resume_study(args.resume, address=args.address or "")
    else:
        if not args.study:
            raise DiststError("distst scale needs a study file (e.g. "
                              "configs/studies/strong-1026.yaml) or --resume STUDY_DIR")
        from distst.scale.config import load_study
        from distst.scale.driver import run_study

        res = run_study(load_study(args.study, list(args.set or [])), dry_run=args.dry_run,
                        address=args.address or "")
    if not args.dry_run:
        print(f"{len(res.ran)} runs ran, {len(res.skipped)} were already done; "
              f"tables in {res.study_dir}/summary.md, one row per run x worker in "
              f"{res.study_dir}/runs.csv")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:

    from distst.storage import location

    d = location(args.dir)
    out = location(args.out) if args.out else d
    if (d / "study.yaml").is_file():
        from distst.scale.driver import redraw

        drawn = redraw(d)
        out = d
    elif (d / "sweep.yaml").is_file():
        from distst.plots.sweep import plot_sweep

        from distst.config import read_saved_yaml

        saved = read_saved_yaml(d / "sweep.yaml", ("sweep",), "sweep file",
                                "pass a sweep folder that distst tune wrote")["sweep"]
        drawn = plot_sweep(d, out, saved.get("metric", "val_mae"),
                           list(saved.get("search_space") or {}))
    elif (d / "metrics.jsonl").is_file() or (d / "config.yaml").is_file():
        from distst.engine.checkpoint import checkpoint_dirs
        from distst.plots.run import plot_forecasts, plot_run

        drawn = plot_run(d, out)
        if checkpoint_dirs(d):
            from distst.engine.forecast import run_forecasts

            sensors = [s.strip() for s in args.sensors.split(",") if s.strip()] \
                if args.sensors else None
            drawn.update(plot_forecasts(run_forecasts(d, sensors), out))
        else:
            print(f"{d}: no checkpoint yet, so no forecasts to draw")
    else:
        raise DiststError(f"{args.dir} is not a run, sweep or study directory (no metrics.jsonl, "
                          "sweep.yaml or study.yaml); pass the folder distst printed as 'run "
                          "directory', 'sweep directory' or 'study directory'")
    for name in drawn:
        print(f"wrote {out / name}")
    return 0


# -- parser --------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distst", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="verb", required=True)

    t = sub.add_parser("train", help="train a model (Ray Train DDP, or --local)")
    t.add_argument("config", help="YAML config, e.g. configs/quickstart.yaml")
    t.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.epochs=5 (repeatable)")
    t.add_argument("--workers", type=int, help="number of Ray Train workers (runtime.workers)")
    t.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    t.add_argument("--local", action="store_true", help="train in this process, without Ray")
    t.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest checkpoint")
    t.set_defaults(func=cmd_train)

    tu = sub.add_parser("tune", help="hyperparameter sweep (Ray Tune over Ray Train runs)")
    tu.add_argument("sweep", nargs="?", help="sweep YAML, e.g. configs/sweeps/gcgru.yaml")
    tu.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a sweep key (num_samples=2) or a base-config key "
                         "(train.epochs=2) (repeatable)")
    tu.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    tu.add_argument("--resume", metavar="RUN_DIR",
                    help="continue an interrupted sweep; finished trials are not re-run")
    tu.add_argument("--no-progress", action="store_true", help="no trial table while it runs")
    tu.set_defaults(func=cmd_tune)

    sc = sub.add_parser("scale", help="scaling study: timed training runs over a grid of "
                                      "graphs, modes and workers, with tables and a model")
    sc.add_argument("study", nargs="?", help="study YAML, e.g. configs/studies/strong-1026.yaml")
    sc.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a study key (timed_steps=5, grid.runtime.workers=[1,2]) or a "
                         "base-config key (train.batch_size=32) (repeatable)")
    sc.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    sc.add_argument("--resume", metavar="STUDY_DIR",
                    help="continue an interrupted study; finished runs are not run again")
    sc.add_argument("--dry-run", action="store_true",
                    help="print the runs and what each needs; run nothing")
    sc.set_defaults(func=cmd_scale)

    pl = sub.add_parser("plot", help="draw the PNGs of a run, a sweep or a study directory")
    pl.add_argument("dir", help="a run, sweep or study directory (a path or a URI)")
    pl.add_argument("--out", help="where the PNGs go (default: the directory itself; a study "
                                  "always redraws in place)")
    pl.add_argument("--sensors", metavar="ID,ID,...",
                    help="a run: the sensor ids whose test-day forecasts forecast.png shows "
                         "(default: the sensors at the 10th, 50th and 90th percentile of test "
                         "MAE)")
    pl.set_defaults(func=cmd_plot)

    pa = sub.add_parser("partition", help="cut a prepared dataset into halo shards on disk")
    pa.add_argument("data_dir", help="prepared dataset directory")
    pa.add_argument("--method", default="metis", help="metis | gpa")
    pa.add_argument("--parts", type=int, required=True, help="number of parts (= shard workers)")
    pa.add_argument("--halo-hops", type=int, default=2, help="k-hop halo around each part")
    pa.add_argument("--seed", type=int, default=0)
    pa.add_argument("--order", default="ascending",
                    help="ascending | rcm: each part's nodes in global-id order, or in reverse "
                         "Cuthill-McKee order (neighbours close in memory: faster graph "
                         "products on large parts)")
    pa.add_argument("--out", required=True, help="plan directory to write")
    pa.set_defaults(func=cmd_partition)

    e = sub.add_parser("evaluate", help="re-evaluate a checkpoint on the test split")
    e.add_argument("checkpoint", help="run directory or checkpoint directory")
    e.add_argument("--split", default="test", choices=["train", "val", "test"])
    e.add_argument("--json", action="store_true", help="print JSON instead of a table")
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="forecasts of a trained run as a long table (Parquet "
                                        "or CSV)")
    pr.add_argument("run", help="run directory or checkpoint directory (a path or a URI)")
    pr.add_argument("--data", help="prepared dataset (a folder or URI) of the run's sensors, "
                                   "channels and step; default: the run's own")
    pr.add_argument("--at", nargs="+", metavar="TIME",
                    help="forecast from the windows whose last input step is at these times")
    pr.add_argument("--last", action="store_true", help="forecast from the newest window")
    pr.add_argument("--split", choices=["train", "val", "test"],
                    help="forecast from every window of the run's split (its own data)")
    pr.add_argument("--out", required=True, help="the table: FILE.parquet, FILE.csv or a URI")
    pr.add_argument("--format", choices=["parquet", "csv"],
                    help="default: csv when --out ends in .csv, else parquet")
    pr.add_argument("--whole", action="store_true",
                    help="a run trained in shard or exchange mode: forecast the whole graph in "
                         "this process (default: through the run's own parts, one Ray worker "
                         "each, as it trained and scored)")
    pr.add_argument("--address", default="",
                    help="the Ray cluster of a forecast through the run's parts (default: "
                         "RAY_ADDRESS, else a local Ray)")
    pr.set_defaults(func=cmd_predict)

    ex = sub.add_parser("export", help="a run as a TorchScript program that loads with plain "
                                       "torch (no distst), with its metadata")
    ex.add_argument("run", help="run directory or checkpoint directory (a path or a URI)")
    ex.add_argument("--out", required=True, help="folder for model.ts and meta.json (or a URI)")
    ex.set_defaults(func=cmd_export)

    sv = sub.add_parser("serve", help="forecasts over HTTP: a run as a Ray Serve deployment")
    sv.add_argument("run", help="run directory or checkpoint directory (a path or a URI)")
    sv.add_argument("--host", default="127.0.0.1",
                    help="address to listen on (default loopback only; 0.0.0.0 for all)")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--replicas", type=int, default=1, help="model replicas (Ray actors)")
    sv.add_argument("--cpus-per-replica", type=float, default=1.0)
    sv.add_argument("--threads", type=int, default=1, help="torch threads per replica")
    sv.add_argument("--access-log", action="store_true", help="log a line per request")
    sv.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else local)")
    sv.set_defaults(func=cmd_serve)

    d = sub.add_parser("data", help="prepare, generate or inspect datasets")
    dsub = d.add_subparsers(dest="data_verb", required=True)
    dp = dsub.add_parser("prepare", help="convert a standard format into distst's layout",
                         formatter_class=_RegistryHelp)
    dp.add_argument("--format", required=True, help="FORMATS")
    dp.add_argument("--path", required=True, help="directory holding the format's files")
    dp.add_argument("--out", required=True, help="output dataset directory")
    dp.add_argument("--series", help="series file, overriding the one found in --path")
    dp.add_argument("--graph", help="graph file, overriding the one found in --path")
    dp.add_argument("--opt", action="append", metavar="KEY=VALUE",
                    help="reader option, e.g. --opt zero_is_missing=false (repeatable)")
    dp.add_argument("--start", default=None, metavar="ISO",
                    help="first time stamp of a series without timestamps (pems03/04/07/08, "
                         "pemsd7, los-loop), e.g. 2018-01-01 or 2018-01-01T06:00; default: the "
                         "dataset's documented first day (see README)")
    dp.set_defaults(func=cmd_data_prepare)
    ds = dsub.add_parser("synth", help="generate a synthetic sensor network")
    ds.add_argument("--nodes", type=int, default=1026)
    ds.add_argument("--days", type=int, default=14)
    ds.add_argument("--seed", type=int, default=0)
    ds.add_argument("--graph", default="knn", choices=["knn", "delaunay"])
    ds.add_argument("--grid", default=None, metavar="HxW",
                    help="a TaxiBJ-like flow grid of H x W regions instead (HyperST-CNN)")
    ds.add_argument("--step-minutes", type=int, default=None,
                    help="grid only: minutes per step (default 60; TaxiBJ uses 30)")
    ds.add_argument("--out", required=True)
    ds.set_defaults(func=cmd_data_synth)
    di = dsub.add_parser("info", help="summarise a prepared dataset")
    di.add_argument("dir", help="a dataset folder or URI (s3://, gs://, file://)")
    di.add_argument("--json", action="store_true")
    di.add_argument("--cache-dir", default=None,
                    help="where a URI's dataset is fetched to (default: data.cache_dir's "
                         "default, ~/.cache/distst)")
    di.set_defaults(func=cmd_data_info)
    return p


class _RegistryHelp(argparse.HelpFormatter):
    """``data prepare --help`` lists the formats from the reader registry itself (a list
    written here once left out ``largest``); read only when help is printed, since the
    registry imports pandas."""

    def _get_help_string(self, action):
        if action.help == "FORMATS":
            from distst.data.formats import FORMATS

            return " | ".join(FORMATS)
        return super()._get_help_string(action)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiststError as e:
        _quiet_ray()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        _quiet_ray()
        print(f"interrupted{'; ' + str(e) if str(e) else ''}", file=sys.stderr)
        return 130
    except OSError as e:
        if e.errno not in _STORAGE_ERRNOS:
            raise
        # a full disk or a quota mid-write: what distst writes is staged beside its target
        # and removed on this error, so nothing half-written is left (tested)
        _quiet_ray()
        # name the target, not its staging folder (.NAME.tmp-XXXX, removed by now)
        target = re.sub(r"([/\\])\.([^/\\]+)\.tmp-[^/\\]+", r"\1\2", str(e.filename or ""))
        where = f" writing {target}" if target else ""
        print(f"error: {e.strerror or e}{where}; free space there or choose another output "
              "folder (nothing half-written was left)", file=sys.stderr)
        return 2


#: errors of the storage itself, not of distst: a one-line message, not a traceback
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def _quiet_ray() -> None:
    """Let the workers' last log lines (their tracebacks) arrive, then detach from Ray, so
    that the one-line error is the last thing printed rather than one between tracebacks."""
    runtime = sys.modules.get("distst.runtime.ray_train")
    if runtime is not None and runtime.CONNECTED and runtime.ray.is_initialized():
        import time

        ray = runtime.ray

        time.sleep(1.0)
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
