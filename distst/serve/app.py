"""The forecasting service: a Ray Serve deployment of a trained run (``distst serve``).

Each replica restores the run's best model once and answers

- ``POST /forecast`` (or ``/``): windows in, forecasts out (JSON or Arrow, see
  :mod:`distst.serve.windows`); concurrent requests are batched into one forward
  (``serve.batch``: up to ``max_batch`` windows, waiting at most ``batch_wait_ms``), and
  their forecasts equal ``distst predict``'s for the same windows;
- ``GET /healthz``: ``ok``; ``GET /metadata``: the model's sizes, sensor ids, channels,
  scaler and time encoding (:func:`distst.engine.export.describe`).

A request the service cannot read gets a 4xx with one line naming what was wrong, never a
traceback; an error inside the service is a 500 with one line. It listens on 127.0.0.1
unless told another host.
"""

from __future__ import annotations

import asyncio

import numpy as np
import torch
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from distst.errors import DiststError
from distst.serve.windows import ARROW, BadRequest, read_arrow, read_json, write_arrow, write_json

APP = "distst"


def _line(status: int, text: str) -> PlainTextResponse:
    return PlainTextResponse(text.replace("\n", " ") + "\n", status_code=status)


@serve.deployment(name="forecaster")
class Forecasts:
    def __init__(self, run: str, threads: int = 1, max_batch: int = 32,
                 batch_wait_ms: float = 5.0):
        from distst.engine.entry import restore_best
        from distst.engine.export import describe, forecaster

        torch.set_num_threads(max(1, threads))
        trainer = restore_best(run)
        self.model = forecaster(trainer)
        self.meta = describe(trainer)
        self.meta.pop("config", None)  # the run's paths and settings stay on the server
        self.meta.pop("dataset", None)
        self._forecast.set_max_batch_size(max_batch)
        self._forecast.set_batch_wait_timeout_s(batch_wait_ms / 1000)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.005)
    async def _forecast(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        sizes = [len(v) for v, _ in items]
        values = torch.from_numpy(np.concatenate([v for v, _ in items]))  # [sum B, L, N, C]
        stamps = torch.from_numpy(np.concatenate([t for _, t in items]))  # [sum B, L]
        with torch.no_grad():
            out = self.model(values, stamps).numpy()  # [sum B, H, N, C_t]
        return np.split(out, np.cumsum(sizes)[:-1])

    async def __call__(self, request: Request) -> Response:
        path = request.url.path.rstrip("/") or "/"
        try:
            if path == "/healthz":
                return _line(200, "ok")
            if path == "/metadata":
                return JSONResponse(self.meta)
            if path not in ("/", "/forecast"):
                return _line(404, f"no route {path}; POST /forecast, GET /metadata, "
                                  "GET /healthz")
            if request.method != "POST":
                return _line(405, f"{request.method} {path}: POST the windows here")
            body = await request.body()
            kind = request.headers.get("content-type", "application/json").split(";")[0]
            if kind == ARROW:
                values, stamps = read_arrow(body, self.meta)
            elif kind in ("application/json", "text/json", ""):
                values, stamps = read_json(body, self.meta)
            else:
                return _line(415, f"content-type {kind}: send application/json or {ARROW}")
            out = await self._forecast((values, stamps))
            if ARROW in request.headers.get("accept", "") or kind == ARROW:
                return Response(write_arrow(out, stamps), media_type=ARROW)
            return Response(write_json(out, stamps, self.meta), media_type="application/json")
        except BadRequest as e:
            return _line(400, str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - one line, never a traceback to the client
            return _line(500, f"internal error: {type(e).__name__}: "
                              f"{str(e).splitlines()[0][:200] if str(e) else ''}")


#: whether this process started Ray Serve (then :func:`stop` ends it; one that ran before,
#: on a shared cluster, keeps running with whatever else it serves)
_STARTED: list[bool] = [False]


def _running_serve():
    """The client of the Serve already running on the connected Ray, or None."""
    from ray.serve.context import _get_global_client

    try:
        return _get_global_client(raise_if_no_controller_running=False)
    except Exception:  # another Ray lays its internals out otherwise: start Serve as usual
        return None


def serve_run(run: str, host: str = "127.0.0.1", port: int = 8000, replicas: int = 1,
              cpus_per_replica: float = 1.0, threads: int = 1, max_batch: int = 32,
              batch_wait_ms: float = 5.0, access_log: bool = False) -> str:
    """Deploys the service on the connected Ray and returns its URL; it keeps running after
    this returns (:func:`stop` ends it). ``access_log``: a line per request in the replica's
    log (and on the console of ``distst serve``); off by default: in the load test it cost
    12% of the throughput (16.7 against 19.0 requests/s, benchmarks/RESULTS.md).

    On a cluster where Ray Serve already runs, its proxy keeps the host and port it was
    started with (Ray only warns that new ones "will not be applied"), and an application of
    the same name would be replaced: both are refused with what to do instead."""
    running = _running_serve()
    if running is None:
        serve.start(http_options={"host": host, "port": port})
        _STARTED[0] = True
    else:
        http = running.http_config
        if (http.host, int(http.port)) != (host, int(port)):
            raise DiststError(
                f"Ray Serve already runs on this cluster and listens on {http.host}:{http.port},"
                f" which it cannot change while it runs; serve on it with --host {http.host} "
                f"--port {http.port}, or on a cluster without Serve")
        if APP in (serve.status().applications or {}):
            raise DiststError(
                f"an application named {APP!r} already runs on this cluster's Serve (another "
                f"distst serve at {http.host}:{http.port}); stop it (Ctrl-C in its terminal, "
                f"or serve.delete({APP!r})) before serving another run")
    app = Forecasts.options(num_replicas=replicas, max_ongoing_requests=4 * max_batch,
                            ray_actor_options={"num_cpus": cpus_per_replica},
                            logging_config={"enable_access_log": access_log}).bind(
        run, threads=threads, max_batch=max_batch, batch_wait_ms=batch_wait_ms)
    serve.run(app, name=APP, route_prefix="/", blocking=False)
    return f"http://{host}:{port}"


def stop() -> None:
    """Ends the service's application, and Serve's proxy and controller where this process
    started them (a Serve that ran before keeps serving its other applications)."""
    if _STARTED[0]:
        serve.shutdown()
        _STARTED[0] = False
    else:
        serve.delete(APP)
