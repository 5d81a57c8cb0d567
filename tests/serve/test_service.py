"""`distst serve`: the forecasting service on the session's Ray, spoken to over HTTP on
loopback: its answers equal `distst predict`'s (JSON and Arrow, alone and under concurrent
requests that it batches), and every bad request gets a 4xx with one line."""

from __future__ import annotations

import io
import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from distst.engine.entry import restore_best
from distst.engine.predict import predict
from ray_heads import free_port
from raw_files import trained_los_run

ARROW = "application/vnd.apache.arrow.stream"
AT = ["2012-03-02T08:00", "2012-03-02T17:30", "2012-03-03T06:05"]


@pytest.fixture(scope="module")
def service(ray_session, tmp_path_factory):
    from distst.serve.app import serve_run, stop

    run = trained_los_run(tmp_path_factory.mktemp("serve"), "s", nodes=10, seed=3)
    # no CPU reserved: the session Ray holds each test to giving back what it took, and the
    # replica lives for the whole module
    url = serve_run(str(run), port=free_port(), cpus_per_replica=0)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if _get(url + "/healthz") == (200, "ok\n"):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the service did not come up"
            time.sleep(0.5)
        yield url, run
    finally:
        stop()


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _post(url, body: bytes, kind="application/json", accept=None):
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": kind})
    if accept:
        req.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _windows(run, at):
    """The raw windows ending at ``at``: (values [B, L, N, C] with NaN, int64 stamps [B, L])."""
    net = restore_best(run).bundle.network
    ts = np.asarray(net.timestamps, np.int64)
    ends = [int(np.searchsorted(ts, np.datetime64(t, "ns").astype(np.int64))) for t in at]
    rows = np.asarray(ends)[:, None] - 11 + np.arange(12)[None, :]
    return np.asarray(net.values, np.float32)[rows], ts[rows]


def _json_body(values, stamps):
    return json.dumps({"windows": [
        {"values": np.where(np.isnan(v), None, v).tolist(),
         "timestamps": [str(np.datetime64(int(t), "ns")) for t in s]}
        for v, s in zip(values, stamps)]}).encode()


def test_json_forecasts_equal_predict(service):
    url, run = service
    values, stamps = _windows(run, AT)
    status, body = _post(url + "/forecast", _json_body(values, stamps))
    assert status == 200, body
    doc = json.loads(body)
    want = predict(run, at=AT)
    got = np.asarray([f["values"] for f in doc["forecasts"]], np.float32)
    assert got.shape == want.values.shape == (3, 12, 10, 1)
    np.testing.assert_allclose(got, want.values, rtol=0, atol=1e-5)
    assert doc["sensor_ids"] == want.sensor_ids and doc["target_channels"] == ["speed"]
    assert [f["forecast_time"] for f in doc["forecasts"]] == [
        "2012-03-02T08:00:00", "2012-03-02T17:30:00", "2012-03-03T06:05:00"]
    assert doc["forecasts"][0]["target_times"][:2] == ["2012-03-02T08:05:00",
                                                       "2012-03-02T08:10:00"]
    status, text = _get(url + "/metadata")
    meta = json.loads(text)
    assert status == 200 and meta["sensor_ids"] == [f"s{i}" for i in range(10)]
    assert (meta["input_len"], meta["horizon"], meta["num_nodes"]) == (12, 12, 10)
    assert "config" not in meta  # the run's paths stay on the server


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(service):
    url, run = service
    at = [f"2012-03-02T{h:02d}:{m:02d}" for h in range(6, 10) for m in (0, 15, 30, 45)]
    values, stamps = _windows(run, at)
    want = predict(run, at=at).values

    def one(i):
        status, body = _post(url + "/forecast", _json_body(values[i:i + 1], stamps[i:i + 1]))
        assert status == 200, body
        return np.asarray(json.loads(body)["forecasts"][0]["values"], np.float32)

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, range(len(at))))
    for i, g in enumerate(got):
        np.testing.assert_allclose(g, want[i], rtol=0, atol=1e-5)


def test_arrow_in_and_out(service):
    import pyarrow as pa

    url, run = service
    values, stamps = _windows(run, AT[:2])
    values[0, 5, 3, 0] = np.nan  # a missing reading: the model sees what predict feeds it
    table = pa.table({
        "values": pa.ListArray.from_arrays(pa.array(np.arange(3) * values[0].size, pa.int32()),
                                           pa.array(values.reshape(-1))),
        "timestamps": pa.ListArray.from_arrays(pa.array([0, 12, 24], pa.int32()),
                                               pa.array(stamps.reshape(-1)))})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    status, body = _post(url + "/forecast", sink.getvalue(), kind=ARROW)
    assert status == 200, body
    out = pa.ipc.open_stream(io.BytesIO(body)).read_all()
    got = np.asarray(out.column("values").combine_chunks().flatten()).reshape(2, 12, 10, 1)
    from distst.engine.export import forecaster

    import torch

    with torch.no_grad():
        want = forecaster(restore_best(run))(torch.from_numpy(values),
                                             torch.from_numpy(stamps)).numpy()
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    np.testing.assert_allclose(got[1], predict(run, at=AT[1:2]).values[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("case,status,expect", [
    ("not_json", 400, "body: not JSON"),
    ("short", 400, "values: shape [11, 10, 1]; the model reads [input_len=12][num_nodes=10]"),
    ("sensors", 400, "values: shape [12, 9, 1]"),
    ("uneven", 400, "timestamps: step 3 is 10 min after the one before"),
    ("unknown_key", 400, "unknown key 'sensor'"),
    ("inf", 400, "values: infinite numbers"),
    ("text", 415, "content-type text/plain"),
    ("get", 405, "GET /forecast: POST the windows here"),
    ("route", 404, "no route /predict"),
])
def test_a_bad_request_gets_a_4xx_with_one_line(service, case, status, expect):
    url, run = service
    values, stamps = _windows(run, AT[:1])
    v, s = values[0], [str(np.datetime64(int(t), "ns")) for t in stamps[0]]
    body = {"values": v.tolist(), "timestamps": s}
    kind, path = "application/json", "/forecast"
    if case == "not_json":
        raw = b"{values: 1"
    else:
        if case == "short":
            body["values"] = v[1:].tolist()
        elif case == "sensors":
            body["values"] = v[:, :9].tolist()
        elif case == "uneven":
            s[3] = str(np.datetime64(s[3]) + np.timedelta64(5, "m"))
            body["timestamps"] = s
        elif case == "unknown_key":
            body["sensor"] = "s1"
        raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        kind = "text/plain" if case == "text" else kind
        path = "/predict" if case == "route" else path
    if case == "inf":
        raw = json.dumps({"values": np.full((12, 10, 1), 1e300).tolist(),
                          "timestamps": s}).replace("1e+300", "1e999").encode()
    if case == "get":
        got_status, text = _get(url + path)
    else:
        got_status, text = _post(url + path, raw, kind=kind)
        text = text.decode()
    assert got_status == status, text
    assert text.count("\n") == 1 and "Traceback" not in text, text
    assert expect in text, text


def test_a_second_service_on_a_running_serve_is_refused_with_what_to_do(service):
    from distst.errors import DiststError
    from distst.serve.app import serve_run

    url, run = service
    port = int(url.rsplit(":", 1)[1])
    # Serve's proxy cannot move: Ray would only warn and listen where it was
    with pytest.raises(DiststError, match=rf"already runs on this cluster and listens on "
                       rf"127.0.0.1:{port}.*--host 127.0.0.1 --port {port}"):
        serve_run(str(run), port=free_port(), cpus_per_replica=0)
    # and the same application name would replace the service that runs
    with pytest.raises(DiststError, match=r"an application named 'distst' already runs"):
        serve_run(str(run), port=port, cpus_per_replica=0)
    assert _get(url + "/healthz") == (200, "ok\n")
