"""Readers for the standard traffic benchmarks and a generic table format -> ``SensorNetwork``.

``read_dataset(fmt, path, **options)`` reads a directory holding a dataset's usual files and
returns a :class:`~distst.data.network.SensorNetwork`; ``read_graph(fmt, path, **options)``
reads only the graph files (a :class:`SensorGraph`), for the many benchmarks whose graph is
public but whose series is not at hand. Every file can be overridden by an option
(``series=``, ``graph=``, ...); a relative override is taken relative to ``path``. ``FORMATS``
maps each format name to its readers and its documentation line.

Conventions common to all formats
---------------------------------
* Missing observations become NaN. NaN in a source is missing. With ``zero_is_missing=True``
  a 0 is missing too -- the standard convention of the speed/flow benchmarks, where loop
  detectors report 0 when they report nothing (DCRNN masks ``y == 0`` in its loss).
* Node order is the graph file's order; the series is reordered to it by sensor id where the
  files carry ids, and a mismatch in count or ids is an error -- no sensor is ever dropped.
* A sensor with no observation at all is an error (``SensorNetwork.check_observed``).
* Timestamps must be strictly increasing. Formats without timestamps get synthetic ones from
  a documented start date (option ``start=``, an ISO date or date-time such as ``2018-01-01``
  or ``2018-01-01T06:00``; ``distst data prepare --start``) and ``step_minutes=5``;
  ``source["timestamps"]`` says which, ``source["start"]`` / ``source["start_from"]`` which
  start was used and whether it was given or the documented default (:data:`DOCUMENTED_START`).
  Time of day and day of week, and so every daily/weekly model input, follow from it.

Known start dates of the files without timestamps (5-minute steps unless said otherwise). The
publishers gave months, not days; the days below are the literature's convention (e.g. the
BasicTS dataset README, the STSGCN and ASTGCN papers) and each excerpt is assumed to begin on
it. The step counts agree for PEMS03 (26,208 = 91 days, 2018-09-01..11-30), PEMS04 (16,992 =
59 days, 2018-01-01..02-28) and PEMS08 (17,856 = 62 days, 2016-07-01..08-31). PEMS07 is
UNCERTAIN: the papers give 2017-05-01..08-31 (123 days) but the file holds 28,224 steps = 98
days, so with consecutive days it ends on 2017-08-06 and which days are missing is unknown.
PeMSD7(M): the weekdays of May and June 2012 from 2012-05-01 (a Tuesday). Los-loop:
2012-03-01 (T-GCN: March 2012). Pass ``start=`` when an excerpt starts elsewhere.
* Edge weights follow the paper that published the dataset (see each format); kernel
  options (``convention``, ``sigma``, ``threshold``, ``scale``, ``sigma2``), ``self_loops``
  (default False) and ``symmetric`` (None | "max" | "sum") can be passed to every reader.
  ``source["adjacency"]`` records what was chosen (see :mod:`distst.graph.adjacency`).

Formats (each module's docstring holds the dataset information)
---------------------------------------------------------------
:mod:`.dcrnn` ``metr-la``, ``pems-bay``; :mod:`.pems` ``pems03`` .. ``pems08``; :mod:`.pemsd7`
``pemsd7``; :mod:`.losloop` ``los-loop``; :mod:`.largest` ``largest`` (CA, GLA, GBA, SD);
:mod:`.generic` ``generic``. Shared helpers and the
start dates live in :mod:`._common`.
"""

from __future__ import annotations

import inspect

from distst.data.formats._common import (
    _KERNEL_KEYS,
    DOCUMENTED_START,
    START_FORMAT,
    FormatSpec,
    SensorGraph,
    parse_start,
)
from distst.data.formats.dcrnn import _graph_dcrnn, _read_dcrnn
from distst.data.formats.generic import _graph_generic, _read_generic
from distst.data.formats.largest import _graph_largest, _read_largest
from distst.data.formats.losloop import _graph_los, _read_los
from distst.data.formats.pems import _graph_pems, _read_pems
from distst.data.formats.pemsd7 import _graph_pemsd7, _read_pemsd7
from distst.data.network import SensorNetwork
from distst.errors import DiststError

__all__ = ["DOCUMENTED_START", "FORMATS", "START_FORMAT", "FormatSpec", "SensorGraph",
           "parse_start", "read_dataset", "read_graph"]


# -- registry --------------------------------------------------------------------------------
def _bind(reader, fmt):
    def call(path, **options):
        return reader(fmt, path, **options)
    call.__wrapped_reader__ = reader
    return call


FORMATS: dict[str, FormatSpec] = {}
for _fmt in ("metr-la", "pems-bay"):
    FORMATS[_fmt] = FormatSpec(_fmt, _bind(_read_dcrnn, _fmt), _bind(_graph_dcrnn, _fmt),
                               "DCRNN .h5 + adj_mx pickle")
for _fmt in ("pems03", "pems04", "pems07", "pems08"):
    FORMATS[_fmt] = FormatSpec(_fmt, _bind(_read_pems, _fmt), _bind(_graph_pems, _fmt),
                               "ASTGCN .npz [T, N, C] + from,to,cost csv")
FORMATS["pemsd7"] = FormatSpec("pemsd7", _bind(_read_pemsd7, "pemsd7"),
                               _bind(_graph_pemsd7, "pemsd7"), "STGCN V_N.csv + W_N.csv")
FORMATS["los-loop"] = FormatSpec("los-loop", _bind(_read_los, "los-loop"),
                                 _bind(_graph_los, "los-loop"), "T-GCN los_speed.csv + los_adj.csv")
FORMATS["largest"] = FormatSpec("largest", _bind(_read_largest, "largest"),
                                _bind(_graph_largest, "largest"),
                                "LargeST *_his*.h5 + *_meta.csv + *_rn_adj.npy (CA, GLA, GBA, SD)")
FORMATS["generic"] = FormatSpec("generic", _bind(_read_generic, "generic"),
                                _bind(_graph_generic, "generic"),
                                "series/edges/nodes tables (Parquet or CSV)")


def _accepted(*funcs) -> set[str]:
    names: set[str] = set()
    for f in funcs:
        sig = inspect.signature(f.__wrapped_reader__)
        names |= {p.name for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY}
    return {n for n in names if not n.startswith("_")} | set(_KERNEL_KEYS)


def _spec(fmt: str) -> FormatSpec:
    if fmt not in FORMATS:
        raise DiststError(
            f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}"
        )
    return FORMATS[fmt]


def _check_options(fmt: str, options: dict, funcs) -> None:
    ok = _accepted(*funcs)
    bad = sorted(set(options) - ok)
    if bad:
        raise DiststError(
            f"format {fmt!r}: unknown option(s) {bad}; accepted: {', '.join(sorted(ok))}"
        )


def read_dataset(fmt: str, path, **options) -> SensorNetwork:
    """Read the dataset in directory ``path`` written in format ``fmt`` (see module doc)."""
    spec = _spec(fmt)
    _check_options(fmt, options, (spec.read_dataset, spec.read_graph))
    return spec.read_dataset(path, **options)


def read_graph(fmt: str, path, **options) -> SensorGraph:
    """Read only the graph of the dataset in ``path`` (series files are not needed)."""
    spec = _spec(fmt)
    _check_options(fmt, options, (spec.read_graph,))
    return spec.read_graph(path, **options)
