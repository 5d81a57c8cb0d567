"""Historical average (HA): the seasonal-mean baseline of the traffic-forecasting literature.

The forecast for a future step is the training-set mean of the same node and channel at the
same weekly slot (day-of-week x time-of-day); a weekly slot never observed falls back to the
time-of-day mean, and that to the node's overall mean (and to 0 -- the scaled mean -- for a node
never observed). Not trained by gradient descent: :meth:`HistoricalAverage.fit_history` fills
the table once; with no parameters that require gradients, the engine skips the optimiser.
"""

from __future__ import annotations

import numpy as np
import torch

from distst.errors import DiststError
from distst.nn.base import ForecastModel
from distst.nn.common import check_input

_CHUNK = 2048  # steps per accumulation chunk: bounds memory on memory-mapped histories


def _slots(tod: torch.Tensor, dow: torch.Tensor | None, steps_per_day: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot of day, day of week) as int64 from the [0, 1) encodings.

    Rounding, not flooring: ``tod = minute/1440`` in float32 can sit a hair below the exact
    slot boundary.
    """
    slot = torch.round(tod.double() * steps_per_day).long() % steps_per_day
    if dow is None:
        return slot, torch.zeros_like(slot)
    return slot, torch.round(dow.double() * 7).long() % 7


class HistoricalAverage(ForecastModel):
    """Mean per (day-of-week, time-of-day slot, node, channel) in scaled units.

    ``forward(x [B, T, N, input_dim]) -> [B, horizon, N, output_dim]``: forecast step k
    (1-based) uses the slot of the LAST input step plus k, wrapping across midnight and the
    week end. The time is read from the input's last two channels, time-of-day in [0, 1) then
    day-of-week/7 in [0, 1) (Monday = 0); with ``weekly=False`` or data without a day-of-week
    channel (``day_of_week=False``) the table is daily and only time of day is read.
    """

    OPERATOR_READS = True

    model_name = "ha"
    #: the time channels are counted below, with a message that says which are missing
    targets_in_input = False

    def __init__(
        self,
        *,
        edge_index: torch.Tensor | None = None,  # no graph: accepted and ignored
        edge_weight: torch.Tensor | None = None,
        steps_per_day: int = 288,
        time_of_day: bool = True,
        day_of_week: bool = True,
        weekly: bool = True,
        **sizes,
    ):
        super().__init__(**sizes)
        num_nodes, input_dim, output_dim = self.num_nodes, self.input_dim, self.output_dim
        if not time_of_day:
            raise DiststError("ha: the input has no time-of-day channel, which the historical "
                              "average is indexed by; set data.time_of_day=true")
        # without a day-of-week channel the table is daily: the weekly slot cannot be read
        weekly = weekly and day_of_week
        extra = input_dim - output_dim
        need = 2 if weekly else 1
        if extra < need:
            raise DiststError(
                f"ha: input_dim={input_dim} with output_dim={output_dim} leaves {max(extra, 0)} "
                f"extra channel(s) but weekly={weekly} needs {need} (time-of-day"
                f"{' and day-of-week' if weekly else ''}); enable the time features in the data "
                "config" + ("" if not weekly else " or set weekly: false")
            )
        if steps_per_day < 1:
            raise DiststError(f"ha: steps_per_day={steps_per_day} must be >= 1 "
                              "(288 for 5-minute data)")
        self.steps_per_day, self.weekly = steps_per_day, weekly
        # distst's windows end with [time of day, day of week]; other extra channels precede
        self.tod_channel = input_dim - 2 if day_of_week and extra >= 2 else input_dim - 1
        self.dow_channel = input_dim - 1
        rows = (7 if weekly else 1) * steps_per_day
        # Persistent: the table IS the fitted model and belongs in checkpoints.
        self.register_buffer("table", torch.zeros(rows, num_nodes, output_dim))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit_history(self, values, tod, dow) -> None:
        """Fill the table from a scaled history.

        ``values [T, N, output_dim]`` (NaN = missing; numpy or memmap allowed, read in chunks),
        ``tod [T]`` time of day in [0, 1), ``dow [T]`` day-of-week/7 in [0, 1).
        """
        t_len = values.shape[0]
        if values.ndim != 3 or tuple(values.shape[1:]) != (self.num_nodes, self.output_dim):
            raise DiststError(f"ha: fit_history values have shape {list(values.shape)}, expected "
                              f"[T, {self.num_nodes}, {self.output_dim}] (the training split)")
        tod = torch.as_tensor(np.asarray(tod)).reshape(-1)
        dow = torch.as_tensor(np.asarray(dow)).reshape(-1)
        if tod.shape[0] != t_len or dow.shape[0] != t_len:
            raise DiststError(f"ha: fit_history got {t_len} steps of values but {tod.shape[0]} "
                              f"tod and {dow.shape[0]} dow entries; pass one per step")
        s = self.steps_per_day
        n, c = self.num_nodes, self.output_dim
        wsum = torch.zeros(7 * s, n, c, dtype=torch.float64)
        wcnt = torch.zeros(7 * s, n, c, dtype=torch.float64)
        for start in range(0, t_len, _CHUNK):
            chunk = values[start:start + _CHUNK]
            v = torch.as_tensor(np.asarray(chunk, dtype=np.float64)) if not isinstance(
                chunk, torch.Tensor) else chunk.detach().double().cpu()
            seen = ~torch.isnan(v)
            slot, day = _slots(tod[start:start + _CHUNK], dow[start:start + _CHUNK], s)
            idx = day * s + slot  # [chunk]
            wsum.index_add_(0, idx, torch.where(seen, v, torch.zeros((), dtype=v.dtype)))
            wcnt.index_add_(0, idx, seen.double())
        # [7*S, N, C] -> [7, S, N, C]: time-of-day statistics pool the days
        dsum, dcnt = wsum.view(7, s, n, c).sum(0), wcnt.view(7, s, n, c).sum(0)
        nsum, ncnt = dsum.sum(0), dcnt.sum(0)  # [N, C]
        node_mean = torch.where(ncnt > 0, nsum / ncnt.clamp(min=1), torch.zeros(()))
        day_mean = torch.where(dcnt > 0, dsum / dcnt.clamp(min=1), node_mean)  # [S, N, C]
        if self.weekly:
            week_mean = torch.where(wcnt.view(7, s, n, c) > 0,
                                    wsum.view(7, s, n, c) / wcnt.view(7, s, n, c).clamp(min=1),
                                    day_mean)  # [7, S, N, C]
            table = week_mean.reshape(7 * s, n, c)
        else:
            table = day_mean
        self.table.copy_(table.to(self.table.dtype))
        self.fitted.fill_(True)

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None,
                teacher_forcing: float = 0.0) -> torch.Tensor:
        check_input(self.model_name, x, self.input_len, self.num_nodes, self.input_dim)
        if not bool(self.fitted):
            raise DiststError("ha: the historical-average table is empty; call "
                              "model.fit_history(values, tod, dow) on the training split first")
        s = self.steps_per_day
        # Time features are equal across nodes; node 0 carries them.
        last = x[:, -1, 0, :]  # [B, F]
        slot, day = _slots(last[:, self.tod_channel],
                           last[:, self.dow_channel] if self.weekly else None, s)
        ahead = slot[:, None] + torch.arange(1, self.horizon + 1, device=x.device)  # [B, H]
        day = (day[:, None] + ahead // s) % 7  # crossing midnight advances the day
        idx = day * s + ahead % s if self.weekly else ahead % s  # [B, H]
        return self.table[idx].to(x.dtype)  # [B, H, N, C]
