"""Exchange mode is exact: P gloo processes, each holding one part and its boundary (1 hop;
HimNet's sparse adaptive graph: its graph_hops), give the whole graph's loss, gradients and
outputs of one process (issue 15), on a directed random geometric graph whose METIS cut is
large."""

from __future__ import annotations

import os
import socket

import numpy as np
import pytest
import torch

from distst.config import DataConfig
from distst.data.network import SensorNetwork, save_network
from distst.graph.partition.plan import make_plan, open_part
from process_group import DEFAULT_BACKEND

N, STEPS, BATCH = 36, 400, 3
MODELS = {
    "gcgru": {"K": 3, "hidden_size": 8, "num_layers": 2},
    "dcrnn": {"K": 2, "hidden_size": 8, "num_layers": 2},
    "stgcn": {"Ks": 3, "Kt": 3, "channels": [8, 4, 8], "output_hidden": 8},
    "hyperst_gcgru": {"K": 2, "hidden_size": 8, "num_layers": 1},
    "hyperst_dcgru": {"K": 2, "hidden_size": 8, "num_layers": 1},
    "gru": {"hidden_size": 8, "num_layers": 1},
    "stid": {"input_embedding_dim": 8, "node_embedding_dim": 4, "tod_embedding_dim": 4,
             "dow_embedding_dim": 4, "num_layers": 2, "dropout": 0.0},
}
_HIM = {"graph": "sparse", "hidden_size": 8, "cheb_k": 3, "tod_embedding_dim": 4,
        "dow_embedding_dim": 4, "node_embedding_dim": 4, "st_embedding_dim": 4}
#: case -> (model, params, plan's boundary hops)
CASES = {name: (name, params, 1) for name, params in MODELS.items()}
CASES["himnet"] = ("himnet", {**_HIM, "graph_hops": 1}, 1)
# the default reach: a 2-hop neighbourhood per row, on a 2-hop boundary; and the per-node
# weights of the spatial encoder generated on the fly (KronLinear) instead of materialised
CASES["himnet_2hop"] = ("himnet", {**_HIM, "graph_hops": 2, "num_layers": 2,
                                   "meta_weight_budget_mb": 0.0}, 2)
# ST-UNet: the paper's shape (one ST-Pool of p = 2 GPA levels, max pool, direct copy), and two
# stages of p = 1 with mean pooling and weighted deconvolution (a coarse graph coarsened again,
# degree ranks of coarse nodes)
_STU = {"K": 2, "hidden_size": 8, "dilation": 2, "layer_norm": True}
CASES["stunet"] = ("stunet", {**_STU, "levels": 2, "depth": 1}, 1)
CASES["stunet_2stages"] = ("stunet", {**_STU, "levels": 1, "depth": 2, "pool": "mean",
                                      "unpool": "weighted"}, 1)
# a halo as deep as a filter's chain of products (K - 1 for Chebyshev, K for diffusion): one
# fetch per filter instead of one per product (HaloExchange.chain)
CASES["gcgru_chain"] = ("gcgru", MODELS["gcgru"], 2)
CASES["dcrnn_chain"] = ("dcrnn", MODELS["dcrnn"], 2)
CASES["stgcn_chain"] = ("stgcn", MODELS["stgcn"], 2)  # Clenshaw's chain too (8 -> 4 channels)
# K = 4: T_2 = 2 L~ T_1 - T_0 reads T_0 on halo rows, so the input itself is fetched
CASES["gcgru_k4_chain"] = ("gcgru", {**MODELS["gcgru"], "K": 4}, 3)
# a plan whose parts keep their owned nodes in reverse Cuthill-McKee order, not ascending
CASES["gcgru_chain_rcm"] = CASES["gcgru_chain"]
CASES["dcrnn_rcm"] = CASES["dcrnn"]
ORDER = {"gcgru_chain_rcm": "rcm", "dcrnn_rcm": "rcm"}
#: cases compared in float64. In float32 ST-UNet's layer norms amplify the roundoff of a
#: different summation order to ~2e-5 of the largest gradient (measured); in float64 every
#: number agrees to ~1e-13, which is the proof that nothing but roundoff differs.
FLOAT64 = {"stunet", "stunet_2stages", "stunet_recompute"}
# train.recompute=step: the backward pass runs each recurrent step again, its halo fetches
# included, so the exchange's collectives also run inside the backward pass
RECOMPUTE = {"gcgru_recompute": "gcgru", "himnet_recompute": "himnet_2hop",
             "stunet_recompute": "stunet", "dcrnn_chain_recompute": "dcrnn_chain"}
CASES.update({case: CASES[base] for case, base in RECOMPUTE.items()})


def directed_geometric_network(seed: int = 0) -> SensorNetwork:
    """Sensors at random points; each reads its 4 nearest neighbours and 2 random others (so
    i -> j does not imply j -> i, and METIS cannot cut it cheaply), weights exp(-d^2 / s^2);
    smooth series with noise."""
    rng = np.random.default_rng(seed)
    pts = rng.uniform(0, 10, size=(N, 2))
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    src, dst = [], []
    for i in range(N):
        near = list(np.argsort(d[i])[:4])
        far = rng.choice([j for j in range(N) if j != i and j not in near], 2, replace=False)
        for j in near + list(far):
            src.append(int(j))
            dst.append(i)
    ei = np.array([src, dst], dtype=np.int64)
    s = np.median(d[ei[0], ei[1]])
    ew = np.exp(-(d[ei[0], ei[1]] / s) ** 2) + 0.1
    t = np.arange(STEPS)
    base = 50 + 10 * np.sin(2 * np.pi * t / 288)[:, None] + pts[:, 0][None]
    values = (base + rng.normal(0, 2, size=(STEPS, N))).astype(np.float32)[..., None]
    stamps = (np.datetime64("2024-01-01T00:00") + np.arange(STEPS) * np.timedelta64(5, "m"))
    return SensorNetwork(name="rgg", values=values, timestamps=stamps.astype("datetime64[ns]")
                         .astype(np.int64), node_ids=np.array([f"s{i}" for i in range(N)]),
                         edge_index=ei, edge_weight=ew.astype(np.float32), coords=pts,
                         source={"coords_kind": "xy"})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("exchange") / "rgg"
    save_network(directed_geometric_network(), d)
    return d


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loss_and_grads(case: str, dataset, part, scaler, init: dict, exchange=None,
                    parts=None):
    """The summed inner-node loss of one part (or the whole graph: ``part`` None), its
    gradients, forecasts, the global ids of the inner rows and of all local rows, and the
    names of the per-node parameters. ``parts``: the plan's part of every node, for the
    whole graph's coarsening (exchange mode's super-nodes stay inside parts)."""
    from distst.engine.bundle import build_bundle
    from distst.engine.exchange import connect
    from distst.nn.registry import build_model

    model_name, params, _ = CASES[case]
    bundle = build_bundle(DataConfig(path=str(dataset)), dataset, scaler_state=scaler,
                          part=part, notices=False)
    kwargs = bundle.kwargs_for_model(model_name)
    if parts is not None and "coarsening" in kwargs:
        kwargs["coarsening"] = kwargs["coarsening"].within(parts)
    model = build_model(model_name, kwargs, dict(params))
    local = bundle.owned.global_ids
    state = dict(init)
    for name in getattr(model, "node_parameters", ()):  # a part holds its nodes' rows
        state[name] = init[name][torch.as_tensor(local)]
    model.load_state_dict(state)
    model.recompute = case in RECOMPUTE
    if case in FLOAT64:
        model.double()
    if exchange is not None:
        assert connect(model, exchange(bundle)) >= (1 if model.OPERATOR_READS and model_name not in ("gru", "stid")
                                                    else 0)
    x, y = bundle.datasets["train"].batch(np.arange(BATCH) * 7)
    if case in FLOAT64:
        x, y = x.double(), y.double()
    out = model(x, targets=torch.nan_to_num(y), teacher_forcing=0.0)
    inner = bundle.owned.num_inner
    # a sum, not a mean: the parts' losses and gradients add up to the whole graph's
    loss = (out - torch.nan_to_num(y))[:, :, :inner].abs().sum()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()
             if p.grad is not None}
    return (loss.detach(), grads, out.detach()[:, :, :inner], local[:inner], local,
            tuple(getattr(model, "node_parameters", ())))


def _levels(ex) -> list[tuple[int, int]]:
    """Rows sent and received per exchange of a graph and of its coarser graphs."""
    out = []
    while ex is not None:
        out.append((sum(ex.send_counts), sum(ex.recv_counts)))
        ex = ex.coarser
    return out


def _worker(rank, world, port, dataset, jobs, out_dir):
    """One part: every case of ``jobs`` ({case: (scaler, init, plan)}) on this part, in
    exchange mode."""
    import torch.distributed as dist

    from distst.engine.collectives import Collectives
    from distst.engine.exchange import HaloExchange
    from distst.layout import Layout

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group(DEFAULT_BACKEND, rank=rank, world_size=world)
    try:
        comm = Collectives(Layout("exchange", parts=world), rank, world, torch.device("cpu"))
        group = comm.replica_group()
        for case, (scaler, init, plan) in jobs.items():
            holder = {}

            def make(bundle, holder=holder):
                holder["ex"] = HaloExchange(bundle.owned.global_ids, bundle.owned.num_inner,
                                          group=group, depth=bundle.owned.halo_hops)
                return holder["ex"]

            loss, grads, out, ids, local, node_params = _loss_and_grads(
                case, dataset, open_part(plan, rank), scaler, init, exchange=make)
            torch.save({"loss": loss, "grads": grads, "out": out, "ids": ids, "local": local,
                        "node_params": node_params,
                        "bytes": holder["ex"].bytes_sent, "rounds": holder["ex"].rounds,
                        "send": holder["ex"].send_counts,
                        "recv": holder["ex"].recv_counts, "levels": _levels(holder["ex"])},
                       os.path.join(out_dir, f"{case}-rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"{w}parts")
def exchanged_runs(request, dataset, tmp_path_factory):
    """Every model in exchange mode on ``world`` parts (one spawn for all of them: starting
    processes costs more than the models) and on the whole graph in this process."""
    import torch.multiprocessing as mp

    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model

    world = request.param
    tmp = tmp_path_factory.mktemp(f"exchange{world}")
    plans = {}
    for hops, order in sorted({(h, ORDER.get(c, "ascending")) for c, (_, _, h) in CASES.items()}):
        plans[hops, order], _, q = make_plan(dataset, tmp / f"plan{hops}{order}", method="metis",
                                             parts=world, halo_hops=hops, order=order)
        if (hops, order) == (1, "ascending"):
            quality = q
    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    scaler = whole.scaler.state_dict()
    jobs = {}
    for case, (name, params, hops) in CASES.items():
        torch.manual_seed(0)
        jobs[case] = (scaler, build_model(name, whole.kwargs_for_model(name),
                                          dict(params)).state_dict(),
                      str(plans[hops, ORDER.get(case, "ascending")]))
    mp.spawn(_worker, args=(world, _free_port(), str(dataset), jobs, str(tmp)), nprocs=world)
    out = {}
    for case, (_, init, plan) in jobs.items():
        full = _loss_and_grads(case, dataset, None, scaler, init,
                               parts=np.load(os.path.join(plan, "assignment.npy")))
        parts = [torch.load(tmp / f"{case}-rank{r}.pt", weights_only=False)
                 for r in range(world)]
        out[case] = (full, parts)
    return world, quality, plans[1, "ascending"], out


@pytest.mark.slow  # one spawn of P gloo processes runs every case
@pytest.mark.parametrize("case", list(CASES))
def test_exchange_equals_one_process_on_the_whole_graph(case, exchanged_runs):
    world, quality, _, runs = exchanged_runs
    assert quality["cut_fraction"] >= 0.2, quality  # the boundary is large, not incidental
    (loss, grads, out, _, _, _), parts = runs[case]
    tol = 1e-10 if case in FLOAT64 else 1e-5
    total = sum(float(p["loss"]) for p in parts)
    assert total == pytest.approx(float(loss), rel=tol)
    for name, g in grads.items():
        if name in parts[0]["node_params"]:
            # a per-node parameter: every copy's rows add into their global rows (what
            # distst.engine.parallelize.Parallel.reduce_grads does)
            summed = torch.zeros_like(g)
            for p in parts:
                summed.index_add_(0, torch.as_tensor(p["local"]), p["grads"][name])
        else:
            summed = sum(p["grads"][name] for p in parts)
        scale = float(g.abs().max()) or 1.0
        assert float((summed - g).abs().max()) / scale < tol, name
    for p in parts:  # every owned node's forecast is the whole graph's
        assert torch.allclose(p["out"], out[:, :, p["ids"]], rtol=tol, atol=tol)


def test_without_the_exchange_the_parts_would_differ(exchanged_runs, dataset):
    """The test above is not blind: the same parts without the exchange (shard mode with a
    1-hop halo) miss the whole graph's loss."""
    world, _, plan, runs = exchanged_runs
    (_, _, out, _, _, _), _ = runs["gcgru"]
    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model

    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    torch.manual_seed(0)
    init = build_model("gcgru", whole.kwargs_for_model("gcgru"),
                       dict(MODELS["gcgru"])).state_dict()
    worst = 0.0
    for r in range(world):
        _, _, alone, ids, _, _ = _loss_and_grads("gcgru", dataset, open_part(plan, r),
                                              whole.scaler.state_dict(), init)
        worst = max(worst, float((alone - out[:, :, ids]).abs().max()))
    assert worst > 100 * 1e-5  # the exchange test's tolerance, by a wide margin


@pytest.mark.parametrize("model_name", ["gcgru", "dcrnn", "stgcn"])
def test_bytes_sent_are_the_boundary_volume(model_name, exchanged_runs, dataset, monkeypatch):
    """Bytes a worker sent = sum over the model's exchanges of (rows its neighbours need +
    rows it needs) x columns x 4 bytes, forward, and again backward where the input carries a
    gradient: counted here from the whole-graph model's own products, where the products of
    one input by several operators (a diffusion convolution's first hop in each direction)
    are one exchange."""
    from distst.nn.layers import graph as graphops

    world, _, _, runs = exchanged_runs
    widths, shared = [], []
    real, real_shared = graphops.spmm, graphops.spmm_shared

    def counting(a, a_t, x):
        if not shared:
            widths.append((x.shape[1], x.requires_grad))
        return real(a, a_t, x)

    def counting_shared(pairs, x):
        widths.append((x.shape[1], x.requires_grad))
        shared.append(len(pairs))
        try:
            return real_shared(pairs, x)
        finally:
            shared.pop()

    monkeypatch.setattr(graphops, "spmm", counting)
    monkeypatch.setattr(graphops, "spmm_shared", counting_shared)
    from distst.engine.bundle import build_bundle
    from distst.nn.registry import build_model

    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    torch.manual_seed(0)
    init = build_model(model_name, whole.kwargs_for_model(model_name),
                       dict(MODELS[model_name])).state_dict()
    _loss_and_grads(model_name, dataset, None, whole.scaler.state_dict(), init)
    assert widths
    columns = sum(w for w, _ in widths)
    columns_back = sum(w for w, g in widths if g)
    for p in runs[model_name][1]:
        rows_out, rows_in = sum(p["send"]), sum(p["recv"])
        assert rows_out > 0 and rows_in > 0
        expect = 4 * (columns * rows_out + columns_back * rows_in)
        assert p["bytes"] == pytest.approx(expect, rel=1e-9)


@pytest.mark.parametrize("case", ["stunet", "stunet_2stages"])
def test_stunet_bytes_sent_are_every_stages_boundary_volume(case, exchanged_runs, dataset,
                                                           monkeypatch):
    """Each ST-UNet stage convolves on its own coarse graph and exchanges that graph's
    boundary: bytes = sum over its products of (rows out x columns, + rows in x columns where
    a gradient flows) x 8 (these cases run in float64), with the rows of the stage's exchange.
    The columns are counted per stage from the whole-graph model's products (a product's
    stage is told by its operator's size); setting up the coarse graphs sends nothing
    counted."""
    from distst.engine.bundle import build_bundle
    from distst.nn.layers import graph as graphops
    from distst.nn.registry import build_model

    world, _, plan, runs = exchanged_runs
    calls = []
    real = graphops.spmm

    def counting(a, a_t, x):
        calls.append((a.shape[0], x.shape[1], x.requires_grad))
        return real(a, a_t, x)

    monkeypatch.setattr(graphops, "spmm", counting)
    name, params, _ = CASES[case]
    parts = np.load(os.path.join(plan, "assignment.npy"))
    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    torch.manual_seed(0)
    init = build_model(name, whole.kwargs_for_model(name), dict(params)).state_dict()
    _loss_and_grads(case, dataset, None, whole.scaler.state_dict(), init, parts=parts)
    sizes = sorted({n for n, _, _ in calls}, reverse=True)  # stage 0, 1, ...
    assert len(sizes) == params["depth"] + 1, sizes
    for p in runs[case][1]:
        levels = p["levels"]
        assert len(levels) == params["depth"] * params["levels"] + 1
        assert min(levels[-1]) > 0  # the coarsest stage has a boundary too
        expect = 0
        for n, cols, grad in calls:
            rows_out, rows_in = levels[sizes.index(n) * params["levels"]]
            expect += 8 * cols * (rows_out + (rows_in if grad else 0))
        assert p["bytes"] == expect


@pytest.mark.parametrize("case", ["himnet", "himnet_2hop"])
def test_himnet_bytes_sent_are_the_boundary_volume(case, exchanged_runs, dataset, monkeypatch):
    """HimNet fetches the halo rows of every propagation's input and of the decoder's
    embedding E_st [N, B, d_st] (its per-sample graph's scores read the halo's): bytes = sum
    of (rows out) x width x 4 forward, (rows in) x width x 4 backward where a gradient flows,
    the widths counted from the whole-graph model's own propagations."""
    from distst.engine.bundle import build_bundle
    from distst.nn import himnet
    from distst.nn.registry import build_model

    world, _, _, runs = exchanged_runs
    widths = []
    real = himnet.AdaptiveGraph.__call__

    def counting(self, x):
        widths.append((x.shape[1] * x.shape[2], x.requires_grad))
        return real(self, x)

    monkeypatch.setattr(himnet.AdaptiveGraph, "__call__", counting)
    name, params, _ = CASES[case]
    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    torch.manual_seed(0)
    init = build_model(name, whole.kwargs_for_model(name), dict(params)).state_dict()
    _loss_and_grads(case, dataset, None, whole.scaler.state_dict(), init)
    widths.append((BATCH * params["st_embedding_dim"], True))  # E_st
    columns = sum(w for w, _ in widths)
    columns_back = sum(w for w, g in widths if g)
    for p in runs[case][1]:
        rows_out, rows_in = sum(p["send"]), sum(p["recv"])
        assert rows_out > 0 and rows_in > 0
        assert p["bytes"] == 4 * (columns * rows_out + columns_back * rows_in)


@pytest.mark.parametrize("case,base,per_filter", [("gcgru_chain", "gcgru", 2),
                                                  ("dcrnn_chain", "dcrnn", 3)])
def test_a_deep_halo_fetches_once_per_filter(case, base, per_filter, exchanged_runs, dataset,
                                             monkeypatch):
    """On a halo as deep as a filter's chain of products, a filter fetches its input's halo
    once (HaloExchange.chain): GCGRU (K = 3) makes half the rounds of the 1-hop exchange, DCRNN
    (K = 2, two directions: one shared first hop and one second hop each) a third. Bytes =
    sum over filters of (rows out) x width x 4 forward and (rows in) x width x 4 backward where
    a gradient flows, the rows being the whole halo's (2 hops), the widths counted from the
    whole-graph model's own filters."""
    from distst.engine.bundle import build_bundle
    from distst.nn.layers import cells
    from distst.nn.registry import build_model

    world, _, _, runs = exchanged_runs
    widths = []
    for fn in ("cheb_features", "diffusion_features"):
        real = getattr(cells, fn)

        def counting(op, *args, real=real):
            x = args[-2]  # (op, op_t, x, K) or (supports, x, K)
            widths.append((x.shape[1] * x.shape[2], x.requires_grad))
            return real(op, *args)

        monkeypatch.setattr(cells, fn, counting)
    name, params, _ = CASES[case]
    whole = build_bundle(DataConfig(path=str(dataset)), dataset, notices=False)
    torch.manual_seed(0)
    init = build_model(name, whole.kwargs_for_model(name), dict(params)).state_dict()
    _loss_and_grads(case, dataset, None, whole.scaler.state_dict(), init)
    filters, filters_back = len(widths), sum(g for _, g in widths)
    columns = sum(w for w, _ in widths)
    columns_back = sum(w for w, g in widths if g)
    for deep, shallow in zip(runs[case][1], runs[base][1]):
        assert deep["rounds"] == filters + filters_back
        assert shallow["rounds"] == per_filter * deep["rounds"]
        rows_out, rows_in = sum(deep["send"]), sum(deep["recv"])
        assert rows_in >= sum(shallow["recv"]) > 0  # the 2-hop halo holds the 1-hop one
        assert deep["bytes"] == 4 * (columns * rows_out + columns_back * rows_in)


def test_an_rcm_plan_orders_the_owned_nodes_and_changes_nothing_else(exchanged_runs):
    """The rcm cases above ran on parts whose owned nodes are not in ascending order (so the
    exactness test covers a worker's rows in any order), on the same partition."""
    world, _, _, runs = exchanged_runs
    for case, base in (("gcgru_chain_rcm", "gcgru_chain"), ("dcrnn_rcm", "dcrnn")):
        for p, q in zip(runs[case][1], runs[base][1]):
            assert sorted(p["ids"].tolist()) == sorted(q["ids"].tolist())
            assert p["ids"].tolist() != q["ids"].tolist()
            assert p["rounds"] == q["rounds"] and p["bytes"] == q["bytes"]
