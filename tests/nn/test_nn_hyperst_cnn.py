"""HyperST-CNN (Pan et al. 2019): gather convolution vs conv2d, shard exactness, channel-wise
scales from attributes, parameter count (Table 1), grid errors, model contract basics."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from distst.data.grid import generate_grid_network
from distst.errors import DiststError
from distst.nn.hyperst_cnn import GridConv, HyperSTCNN, grid_neighbours
from distst.nn.registry import build_model


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation cost (10x on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def grid_coords(h, w):
    rr, cc = np.divmod(np.arange(h * w), w)
    return np.stack([rr, cc], axis=1).astype(np.float64)


def make(h=5, w=6, attrs=None, seed=0, **kw):
    torch.manual_seed(seed)
    n = h * w
    if attrs is None:
        attrs = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    args = dict(num_nodes=n, input_dim=2, output_dim=2, input_len=4, horizon=2,
                spatial_attrs=attrs, coords=grid_coords(h, w), spatial_widths=[8, 4],
                channels=[6, 5])
    args.update(kw)
    return HyperSTCNN(**args)


def conv2d_weight(conv: GridConv, k: int) -> torch.Tensor:
    """GridConv's [c_out, k*k*c_in] -> conv2d's [c_out, c_in, k, k]."""
    return conv.lin.weight.view(conv.c_out, k, k, conv.c_in).permute(0, 3, 1, 2)


def reference(model: HyperSTCNN, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The model on an H x W image with torch's conv2d (zero padding) and z as channel maps."""
    b, t, n, c = x.shape
    img = x.permute(0, 1, 3, 2).reshape(b, t * c, h, w)  # channel t*C + c, pixel row-major
    for conv, z in zip(model.convs, model.scales()):
        y = F.conv2d(img, conv2d_weight(conv, 3), padding=1)
        img = torch.relu(y * z.T.reshape(1, -1, h, w) + conv.lin.bias.view(1, -1, 1, 1))
    k = int(round(model.out_conv.taps ** 0.5))
    out = F.conv2d(img, conv2d_weight(model.out_conv, k), model.out_conv.lin.bias,
                   padding=k // 2)  # [B, H*O, h, w]
    return out.reshape(b, model.horizon, model.output_dim, n).permute(0, 1, 3, 2)


@pytest.mark.parametrize("output_kernel", [1, 3])
def test_equals_conv2d_with_unit_and_generated_scales(output_kernel):
    h, w = 5, 6
    m = make(h, w, output_kernel=output_kernel)
    x = torch.randn(3, 4, h * w, 2)
    with torch.no_grad():
        for head in m.heads:
            head.weight.zero_()  # z = 1 + e @ 0: plain convolutions
        assert all(torch.all(z == 1) for z in m.scales())
        torch.testing.assert_close(m(x), reference(m, x, h, w), atol=1e-5, rtol=1e-5)
        for head in m.heads:
            head.weight.normal_()  # real generated per-cell scales
        assert not torch.allclose(m.scales()[0][0], m.scales()[0][1])
        torch.testing.assert_close(m(x), reference(m, x, h, w), atol=1e-5, rtol=1e-5)


def _local_with_halo(h, w, inner_cells, hops):
    """Inner nodes first, then every node within ``hops`` 4-neighbour hops, in shuffled order."""
    coords = grid_coords(h, w)
    d = np.abs(coords[:, None, :] - coords[None, inner_cells, :]).sum(-1).min(1)  # L1 hops
    halo = np.flatnonzero((d > 0) & (d <= hops))
    np.random.default_rng(0).shuffle(halo)
    return np.concatenate([inner_cells, halo])


def test_gather_conv_on_a_shard_matches_full_grid():
    h, w, cin, cout = 7, 8, 3, 4
    full_nb = torch.from_numpy(grid_neighbours(grid_coords(h, w), 3))
    n = h * w
    conv = GridConv(cin, cout, 9)
    x = torch.randn(2, n, cin)
    z = torch.rand(n, cout) + 0.5
    want = conv(x, torch.where(full_nb < 0, n, full_nb).reshape(-1), z)
    inner = np.array([9, 10, 17, 18, 26])  # includes a border-adjacent block
    local = _local_with_halo(h, w, inner, hops=2)  # a diagonal neighbour is 2 hops away
    nb = grid_neighbours(grid_coords(h, w)[local], 3)
    assert (nb[: len(inner)] >= 0).sum() == (full_nb.numpy()[inner] >= 0).sum()
    nb_t = torch.from_numpy(np.where(nb < 0, len(local), nb).reshape(-1))
    got = conv(x[:, local], nb_t, z[local])[:, : len(inner)]
    torch.testing.assert_close(got, want[:, inner])
    # a 1-hop halo misses the diagonals: the result differs (so the test above has teeth)
    local1 = _local_with_halo(h, w, inner, hops=1)
    nb1 = grid_neighbours(grid_coords(h, w)[local1], 3)
    nb1_t = torch.from_numpy(np.where(nb1 < 0, len(local1), nb1).reshape(-1))
    bad = conv(x[:, local1], nb1_t, z[local1])[:, : len(inner)]
    assert not torch.allclose(bad, want[:, inner])


def test_model_on_a_shard_with_4_hop_halo_matches_full_grid():
    h, w = 9, 9
    attrs = torch.randn(h * w, 3)
    full = make(h, w, attrs=attrs)
    inner = np.array([30, 31, 40])
    local = _local_with_halo(h, w, inner, hops=4)  # two 3x3 layers + 1x1 read-out
    shard = HyperSTCNN(num_nodes=len(local), input_dim=2, output_dim=2, input_len=4, horizon=2,
                       spatial_attrs=attrs[local], coords=grid_coords(h, w)[local],
                       spatial_widths=[8, 4], channels=[6, 5])
    shard.load_state_dict(full.state_dict())
    x = torch.randn(2, 4, h * w, 2)
    with torch.no_grad():
        torch.testing.assert_close(shard(x[:, :, local])[:, :, : len(inner)],
                                   full(x)[:, :, inner], atol=1e-5, rtol=1e-5)


def test_equal_attributes_give_equal_scales():
    attrs = torch.randn(30, 3)
    attrs[7] = attrs[21]
    m = make(attrs=attrs)
    with torch.no_grad():
        for head in m.heads:
            head.weight.normal_()
        for z in m.scales():
            assert z.shape[0] == 30
            torch.testing.assert_close(z[7], z[21])
            assert not torch.allclose(z[7], z[8])


def test_shape_grads_overfit_and_permutation():
    h, w = 4, 5
    m = make(h, w, seed=1, channels=[16, 16])
    x = torch.randn(4, 4, h * w, 2)
    y = torch.randn(4, 2, h * w, 2)
    out = m(x)
    assert out.shape == (4, 2, h * w, 2)
    out.pow(2).mean().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(p.shape[0] == h * w for p in m.parameters())  # no per-node parameters
    assert "attrs" not in m.state_dict()  # data, not state
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    first = None
    for _ in range(200):
        opt.zero_grad()
        loss = (m(x) - y).abs().mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.1 * first
    # relabelling the nodes (coords and attributes move with them) permutes the output
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(2))
    m2 = HyperSTCNN(num_nodes=h * w, input_dim=2, output_dim=2, input_len=4, horizon=2,
                    spatial_attrs=m.attrs[perm], coords=grid_coords(h, w)[perm.numpy()],
                    spatial_widths=[8, 4], channels=[16, 16])
    m2.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(m2(x[:, :, perm]), m(x)[:, :, perm], atol=1e-5, rtol=1e-5)


def test_grid_errors():
    with pytest.raises(DiststError, match="no coords.*generate_grid_network"):
        make(coords=None)
    latlon = grid_coords(5, 6) * 0.01 + np.array([34.05, -118.2])
    with pytest.raises(DiststError, match="not integer.*generate_grid_network"):
        make(coords=latlon)
    dup = grid_coords(5, 6)
    dup[3] = dup[4]
    with pytest.raises(DiststError, match="share grid cell"):
        make(coords=dup)
    with pytest.raises(DiststError, match="no spatial attributes"):
        make(attrs=None, spatial_attrs=None)
    with pytest.raises(DiststError, match="odd"):
        make(kernel_size=2)
    with pytest.raises(DiststError, match="channels"):
        make(channels=[])


def test_neighbour_index_layout():
    nb = grid_neighbours(grid_coords(3, 4), 3)  # 3 rows x 4 cols
    assert nb.shape == (12, 9)
    # node 5 = (1, 1): taps row-major over (dr, dc) in {-1, 0, 1}^2
    assert nb[5].tolist() == [0, 1, 2, 4, 5, 6, 8, 9, 10]
    # corner (0, 0): only the lower-right 2x2 exists
    assert nb[0].tolist() == [-1, -1, -1, -1, 0, 1, -1, 4, 5]


def test_parameter_count_table1_and_grid_dataset():
    net = generate_grid_network(6, 7, days=1, seed=0)
    attrs = (net.node_attrs - net.node_attrs.mean(0)) / net.node_attrs.std(0)
    m = build_model("hyperst_cnn", dict(num_nodes=42, input_dim=2, output_dim=2, input_len=12,
                                        horizon=12, edge_index=torch.from_numpy(net.edge_index),
                                        edge_weight=None, spatial_attrs=attrs,
                                        coords=net.coords, out_degree=None), {})
    # spatial Dense(5->64-16-8-8): 384 + 1040 + 136 + 72; heads d*N_out: 8*64 + 8*32;
    # HyperST-Conv N_out*N_in*3*3 + bias: 9*24*64+64, 9*64*32+32; 1x1 read-out 32*24+24
    want = (384 + 1040 + 136 + 72) + (512 + 256) + (13888 + 18464) + 792
    assert sum(p.numel() for p in m.parameters()) == want == 35544
    x = torch.from_numpy(net.values[:12][None].copy())  # [1, 12, 42, 2]
    assert m(x).shape == (1, 12, 42, 2)
