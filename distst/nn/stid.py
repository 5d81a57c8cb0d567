"""STID: spatial-temporal identity, an MLP baseline (Shao et al., CIKM 2022, arXiv 2208.05233).

STID attaches identities to a plain MLP instead of reading the graph: every node's window is
embedded on its own, concatenated with learnable embeddings of the node, of the time of day
and of the day of week, and mapped to the whole horizon at once by residual MLP layers.
With ``X_i in R^{T x C}`` the input window of node ``i`` (all input channels, flattened step by
step: entry ``t * C + c``)::

    E_i   = FC_emb(X_i)                                  (time-series embedding, Sec. 3.2)
    Z_i   = E_i || U_i || T^TiD_{tod(i)} || T^DiW_{dow(i)}   (spatial and temporal identities)
    H^0   = Z_i,  H^{l+1} = FC_2^l(ReLU(FC_1^l(H^l))) + H^l,  l < L   (encoder, Sec. 3.3)
    Y^_i  = FC_reg(H^L)                                  (regression to all horizon steps)

``U [N, D_s]`` is the node embedding, ``T^TiD [steps_per_day, D_tid]`` and ``T^DiW [7, D_diw]``
the temporal ones, indexed by the LAST input step's time of day and day of week, as the authors'
code does. There is no recurrence and no decoder loop: one forward is a few matrix products
per node, which is why users pick it as the fast baseline of LargeST and BasicTS.

Defaults are the authors' METR-LA settings (BasicTS ``baselines/STID/METR-LA.py``): input
embedding 32, node 32, time of day 32, day of week 32, 3 encoder layers, dropout 0.15 inside
each layer (after the activation). The 1x1 convolutions of the authors' code are linear maps
over the feature axis; here they are ``nn.Linear`` on ``[B, N, features]`` (the same weights
with the two trailing 1x1 dimensions dropped), so equal weights give equal outputs.

Deviations, both forced by distst's engine and documented here:

* The node embedding is a per-node parameter (``node_parameters``: on a split graph each worker
  holds its own nodes' rows and their gradients are reduced exactly). The engine initialises it
  ``N(0, 0.1^2)`` from each node's global id, not Xavier-uniform over ``[N, D_s]``, whose
  spread depends on N and would differ between a part and the whole graph (for N = 207 and
  D_s = 32 Xavier's standard deviation is 0.09, so the scale is the same).
* ``output_dim > 1`` is supported by regressing ``horizon * output_dim`` values per node (the
  authors' code has one output channel: ``horizon`` values).

A dimension set to 0 leaves that identity out (the paper's ablations "w/o S", "w/o TiD",
"w/o DiW").
"""

from __future__ import annotations

import torch
from torch import nn

from distst.errors import DiststError
from distst.nn.base import ForecastModel
from distst.nn.common import node_parameter

#: added before ``floor(tod * steps_per_day)``: a time of day stored in float32 may sit a
#: hair below its slot's boundary (as in distst.nn.himnet)
_SLOT_TOL = 1e-3


class ResidualMLP(nn.Module):
    """One encoder layer of STID (Sec. 3.3): ``H + FC_2(Dropout(ReLU(FC_1(H))))``."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(width, width)
        self.fc2 = nn.Linear(width, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.drop(torch.relu(self.fc1(h))))


class STID(ForecastModel):
    """STID forecaster: ``forward(x [B, input_len, N, input_dim]) -> [B, horizon, N, output_dim]``.

    Hyperparameters (paper defaults): ``input_embedding_dim = 32`` (D of ``FC_emb``),
    ``node_embedding_dim = 32``, ``tod_embedding_dim = 32``, ``dow_embedding_dim = 32`` (0 =
    leave that identity out), ``num_layers = 3``, ``dropout = 0.15``. The time of day and day
    of week are read from the input's last channels (distst's encoding: time of day in [0, 1),
    weekday / 7), so an embedding needs its channel (``data.time_of_day`` /
    ``data.day_of_week``). ``targets`` / ``teacher_forcing`` are accepted and ignored (no
    decoder loop).
    """

    OPERATOR_READS = True  # reads no neighbour: every part computes its own nodes exactly

    model_name = "stid"
    targets_in_input = False
    #: the engine's initial spread of the node embedding (module docstring)
    node_parameter_std = 0.1

    def __init__(self, *, steps_per_day: int = 288, time_of_day: bool = True,
                 day_of_week: bool = True, input_embedding_dim: int = 32,
                 node_embedding_dim: int = 32, tod_embedding_dim: int = 32,
                 dow_embedding_dim: int = 32, num_layers: int = 3, dropout: float = 0.15,
                 **sizes):
        super().__init__(**sizes)
        name = self.model_name
        self.check_sizes(input_embedding_dim=input_embedding_dim, num_layers=num_layers,
                         steps_per_day=steps_per_day)
        for key, val in (("node_embedding_dim", node_embedding_dim),
                         ("tod_embedding_dim", tod_embedding_dim),
                         ("dow_embedding_dim", dow_embedding_dim)):
            if isinstance(val, bool) or not isinstance(val, int) or val < 0:
                raise DiststError(f"{name}: {key}={val!r} must be an integer >= 0 (0 leaves "
                                  "that identity out); fix model.params." + key)
        if not 0.0 <= float(dropout) < 1.0:
            raise DiststError(f"{name}: dropout={dropout!r} must be in [0, 1); the paper "
                              "uses 0.15")
        for key, dim, has, flag in (("tod_embedding_dim", tod_embedding_dim, time_of_day,
                                     "time_of_day"),
                                    ("dow_embedding_dim", dow_embedding_dim, day_of_week,
                                     "day_of_week")):
            if dim and not has:
                raise DiststError(
                    f"{name}: {key}={dim} needs the input's {flag.replace('_', '-')} channel, "
                    f"which this data has not; set data.{flag}=true, or "
                    f"model.params.{key}=0 to train without that identity")
        n_time = int(time_of_day) + int(day_of_week)
        self.tod_channel = self.input_dim - n_time if time_of_day else None
        self.dow_channel = self.input_dim - 1 if day_of_week else None
        self.steps_per_day = steps_per_day
        self.input_embedding = nn.Linear(self.input_len * self.input_dim, input_embedding_dim)
        if node_embedding_dim:
            self.node_embedding = node_parameter(self.num_nodes, node_embedding_dim,
                                                 self.node_parameter_std)
            self.node_parameters = ("node_embedding",)
        self.tod_embedding = (nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(steps_per_day, tod_embedding_dim))) if tod_embedding_dim else None)
        self.dow_embedding = (nn.Parameter(nn.init.xavier_uniform_(
            torch.empty(7, dow_embedding_dim))) if dow_embedding_dim else None)
        self.node_embedding_dim = node_embedding_dim
        width = (input_embedding_dim + node_embedding_dim + tod_embedding_dim
                 + dow_embedding_dim)
        self.encoder = nn.Sequential(*(ResidualMLP(width, dropout) for _ in range(num_layers)))
        self.regression = nn.Linear(width, self.horizon * self.output_dim)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        self.check_batch(x, targets, teacher_forcing)
        b, t, n, c = x.shape
        # [B, T, N, C] -> [B, N, T, C] -> [B, N, T*C]: node i's window, step by step
        feats = [self.input_embedding(x.permute(0, 2, 1, 3).reshape(b, n, t * c))]
        if self.node_embedding_dim:
            feats.append(self.node_embedding[None].expand(b, -1, -1))  # [B, N, D_s]
        last = x[:, -1]  # [B, N, C]: the identities of the last input step
        if self.tod_embedding is not None:
            s = self.steps_per_day
            slot = torch.floor(last[..., self.tod_channel] * s + _SLOT_TOL).long() % s
            feats.append(self.tod_embedding[slot])  # [B, N, D_tid]
        if self.dow_embedding is not None:
            day = torch.round(last[..., self.dow_channel] * 7).long() % 7
            feats.append(self.dow_embedding[day])  # [B, N, D_diw]
        h = self.encoder(torch.cat(feats, dim=-1))  # [B, N, width]
        # [B, N, H*O] -> [B, N, H, O] -> [B, H, N, O]
        out = self.regression(h).view(b, n, self.horizon, self.output_dim)
        return out.permute(0, 2, 1, 3)
