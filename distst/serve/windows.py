"""The service's request and answer formats, checked against the model's metadata
(:func:`distst.engine.export.describe`); every refusal is one line naming the field, what it
got and what the model reads.

JSON (``Content-Type: application/json``): one window ``{"values": V, "timestamps": T}`` or
several ``{"windows": [{...}, ...]}``. ``V`` is ``[input_len][num_nodes][channels]`` numbers in
the data's units (``null`` where missing; ``[input_len][num_nodes]`` when the data has one
channel), sensors in ``sensor_ids`` order; ``T`` the steps' times, ISO 8601 strings or
integer nanoseconds since 1970, on the data's clock and ``step_minutes`` apart. The answer:
``{"model", "sensor_ids", "target_channels", "forecasts": [{"forecast_time", "target_times",
"values": [horizon][num_nodes][target channels]}]}``.

Arrow (``application/vnd.apache.arrow.stream``), for large graphs: a table with one row per
window, ``values`` list<float32> of ``input_len * num_nodes * channels`` numbers (in that
order, NaN where missing) and ``timestamps`` list<int64> of ``input_len``. The answer is a
table of ``forecast_time`` (timestamp[ns]) and ``values`` list<float32> of ``horizon *
num_nodes * target channels`` numbers.
"""

from __future__ import annotations

import io
import json

import numpy as np

ARROW = "application/vnd.apache.arrow.stream"
#: windows one request may carry (the answer of a larger one would not fit a response)
MAX_WINDOWS = 256


class BadRequest(ValueError):
    """A request the service refuses with a 4xx and this one-line message."""


def _times(raw, lin: int, step_ns: int, where: str) -> np.ndarray:
    if not isinstance(raw, list) or len(raw) != lin:
        got = f"{len(raw)} entries" if isinstance(raw, list) else type(raw).__name__
        raise BadRequest(f"{where}timestamps: {got}; the model reads input_len={lin} steps")
    try:
        ts = np.asarray([np.datetime64(t, "ns").astype(np.int64) if isinstance(t, str)
                         else int(t) for t in raw], dtype=np.int64)
    except (ValueError, TypeError, OverflowError):
        raise BadRequest(f"{where}timestamps: not ISO 8601 times or integer nanoseconds "
                         "(2012-03-08T14:30:00)") from None
    return check_times(ts, step_ns, where)


def check_times(ts: np.ndarray, step_ns: int, where: str = "") -> np.ndarray:
    d = np.diff(ts)
    if d.size and not np.all(d == step_ns):
        i = int(np.argmax(d != step_ns)) + 1
        raise BadRequest(f"{where}timestamps: step {i} is {d[i - 1] / 60e9:g} min after the one "
                         f"before; the model's steps are {step_ns / 60e9:g} min apart")
    return ts


def _values(raw, meta: dict, where: str) -> np.ndarray:
    lin, n, c = meta["input_len"], meta["num_nodes"], len(meta["channels"])
    try:
        v = np.asarray(raw, dtype=np.float64)  # null -> NaN
    except (ValueError, TypeError):
        raise BadRequest(f"{where}values: not a rectangular array of numbers "
                         f"[{lin}][{n}][{c}]") from None
    if v.ndim == 2 and c == 1:
        v = v[..., None]
    if v.shape != (lin, n, c):
        raise BadRequest(f"{where}values: shape {list(v.shape)}; the model reads [input_len="
                         f"{lin}][num_nodes={n}][channels={c}] (sensor order: /metadata)")
    if np.isinf(v).any():
        raise BadRequest(f"{where}values: infinite numbers; send null (JSON) or NaN (Arrow) "
                         "for a missing reading")
    return v.astype(np.float32)


def read_json(body: bytes, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    """(values [B, L, N, C] float32, timestamps [B, L] int64) of a JSON request."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"body: not JSON ({str(e).splitlines()[0][:80]})") from None
    if not isinstance(doc, dict):
        raise BadRequest('body: a JSON object {"values": ..., "timestamps": ...} or '
                         '{"windows": [...]}')
    windows = doc["windows"] if "windows" in doc else [doc]
    if not isinstance(windows, list) or not windows or len(windows) > MAX_WINDOWS:
        raise BadRequest(f"windows: a list of 1 to {MAX_WINDOWS} windows")
    step_ns = int(round(meta["step_minutes"] * 60e9))
    vals, stamps = [], []
    for i, w in enumerate(windows):
        where = f"windows[{i}]." if "windows" in doc else ""
        if not isinstance(w, dict) or "values" not in w or "timestamps" not in w:
            raise BadRequest(f"{where or 'body'}: needs the keys values and timestamps")
        unknown = sorted(set(w) - {"values", "timestamps"})
        if unknown:
            raise BadRequest(f"{where or 'body'}: unknown key {unknown[0]!r}; the keys are "
                             "values and timestamps")
        vals.append(_values(w["values"], meta, where))
        stamps.append(_times(w["timestamps"], meta["input_len"], step_ns, where))
    return np.stack(vals), np.stack(stamps)


def read_arrow(body: bytes, meta: dict) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(io.BytesIO(body)).read_all()
    except (pa.ArrowInvalid, OSError) as e:
        raise BadRequest(f"body: not an Arrow IPC stream ({str(e).splitlines()[0][:80]})") \
            from None
    missing = [k for k in ("values", "timestamps") if k not in table.column_names]
    if missing:
        raise BadRequest(f"Arrow table: no column {missing[0]!r}; columns values (list<float32>)"
                         " and timestamps (list<int64>), one row per window")
    b = table.num_rows
    if not 1 <= b <= MAX_WINDOWS:
        raise BadRequest(f"Arrow table: {b} rows; 1 to {MAX_WINDOWS} windows per request")
    lin, n, c = meta["input_len"], meta["num_nodes"], len(meta["channels"])
    try:
        v = np.asarray(table.column("values").combine_chunks().flatten(), np.float32)
        t = np.asarray(table.column("timestamps").combine_chunks().flatten(), np.int64)
    except (pa.ArrowInvalid, TypeError, ValueError, AttributeError):
        raise BadRequest("Arrow table: values must be list<float32> and timestamps "
                         "list<int64>") from None
    if v.size != b * lin * n * c:
        raise BadRequest(f"Arrow table: {v.size} values for {b} window(s); each holds "
                         f"input_len*num_nodes*channels = {lin}*{n}*{c} = {lin * n * c}")
    if t.size != b * lin:
        raise BadRequest(f"Arrow table: {t.size} timestamps for {b} window(s); each holds "
                         f"input_len = {lin}")
    if np.isinf(v).any():
        raise BadRequest("Arrow table: infinite values; NaN marks a missing reading")
    t = t.reshape(b, lin)
    step_ns = int(round(meta["step_minutes"] * 60e9))
    for i in range(b):
        check_times(t[i], step_ns, f"row {i}: ")
    return v.reshape(b, lin, n, c), t


def target_times(stamps: np.ndarray, horizon: int, step_minutes: float) -> np.ndarray:
    """[B, H] int64 ns: the steps after each window's last one."""
    step_ns = int(round(step_minutes * 60e9))
    return stamps[:, -1:] + step_ns * np.arange(1, horizon + 1)[None, :]


def _iso(ns) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]"))


def write_json(out: np.ndarray, stamps: np.ndarray, meta: dict) -> bytes:
    tt = target_times(stamps, meta["horizon"], meta["step_minutes"])
    return json.dumps({
        "model": meta["model"], "sensor_ids": meta["sensor_ids"],
        "target_channels": meta["target_channels"],
        "forecasts": [{"forecast_time": _iso(stamps[i, -1]),
                       "target_times": [_iso(t) for t in tt[i]],
                       "values": out[i].tolist()} for i in range(len(out))]}).encode()


def write_arrow(out: np.ndarray, stamps: np.ndarray) -> bytes:
    import pyarrow as pa

    b = len(out)
    flat = pa.array(out.reshape(-1).astype(np.float32))
    offsets = pa.array(np.arange(b + 1, dtype=np.int32) * (out.size // max(b, 1)))
    table = pa.table({"forecast_time": pa.array(stamps[:, -1], pa.timestamp("ns")),
                      "values": pa.ListArray.from_arrays(offsets, flat)})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()
