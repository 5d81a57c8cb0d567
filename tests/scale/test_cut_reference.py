"""The real graphs' METIS cuts that study summaries print beside their own
(distst/scale/cut_reference.json, written by scripts/make_cut_reference.py)."""

import numpy as np
import pytest

from distst.scale.driver import cut_comparison, cut_reference, real_cuts_at


def test_reference_covers_the_real_graphs_and_matches_the_issue():
    ref = cut_reference()["graphs"]
    assert set(ref) == {"METR-LA", "PEMS-BAY", "PeMSD7(M)", "PEMS07", "PEMS08"}
    metr = {(r["parts"], r["halo_hops"]): r for r in ref["METR-LA"]["rows"]}
    # the figures the issue quotes: METR-LA cut 4.3% of its edges at 2 parts, 23.3% at 8
    assert metr[(2, 1)]["cut_fraction"] == pytest.approx(0.043, abs=0.001)
    assert metr[(8, 1)]["cut_fraction"] == pytest.approx(0.233, abs=0.001)


def test_a_stored_row_is_what_the_real_graph_gives_today(shared_data):
    from pathlib import Path

    from distst.data.formats import read_graph
    from distst.graph.partition import partition_graph
    from distst.graph.partition.halo import halo_adjacency, k_hop_halo
    from distst.graph.partition.quality import partition_quality

    g = read_graph("pems08", Path(shared_data) / "pems08")
    p = partition_graph("metis", g.edge_index, g.edge_weight, g.num_nodes, 4, seed=0)
    q = partition_quality(p, g.edge_index, g.edge_weight, halo_hops=2)
    in_adj = halo_adjacency(g.edge_index, g.num_nodes)
    halos = np.array([k_hop_halo(None, g.num_nodes, p.assignment == k, 2, in_adj=in_adj).size
                      for k in range(4)])
    sizes = np.bincount(p.assignment, minlength=4)
    row = next(r for r in cut_reference()["graphs"]["PEMS08"]["rows"]
               if r["parts"] == 4 and r["halo_hops"] == 2)
    assert row["cut_fraction"] == pytest.approx(q["cut_fraction"], abs=1e-5)
    assert row["replication"] == pytest.approx(q["replication"], abs=1e-5)
    assert row["halo_share"] == pytest.approx(float(np.mean(halos / (sizes + halos))), abs=1e-5)


def test_real_graphs_are_matched_by_part_size():
    got = {x["graph"]: x["parts"] for x in real_cuts_at(103.5, 1)}
    assert got["METR-LA"] == 2 and got["PEMS08"] == 2 and got["PEMS07"] in (8, 9)
    assert real_cuts_at(5000, 1) == []  # no real graph has parts that large


def test_summary_table_puts_a_shard_run_beside_the_real_graphs():
    rec = {"run": "r01-n1026-shard-w8", "mode": "shard", "workers": 8, "graph_nodes": 1026,
           "halo_hops": 2, "cut_fraction": 0.0235, "halo_share": 0.12, "replication": 1.2}
    lines = cut_comparison([rec, {**rec, "workers": 1, "run": "r00"}])
    assert lines[1] == "## Cut against the real graphs at the same sensors per part"
    (row,) = [ln for ln in lines if ln.startswith("| r01")]
    assert "| 128 | 2 | 2.35% | 12.0% | 1.200 |" in row and "METR-LA P=2:" in row
    assert cut_comparison([{**rec, "mode": "replicate", "cut_fraction": ""}]) == []
