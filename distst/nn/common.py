"""Pieces shared by the sequence-to-sequence models: input checks and scheduled sampling."""

from __future__ import annotations

import math
import numbers

import torch

from distst.errors import DiststError


def inverse_sigmoid_decay(step: int, k: float = 2000.0) -> float:
    """Teacher-forcing probability after ``step`` training batches (DCRNN, Li et al. 2018, Sec. 2.3).

    Scheduled sampling with inverse sigmoid decay ``eps_i = k / (k + exp(i / k))``: starts near
    1 (decoder fed the truth) and falls to 0 (decoder fed its own predictions); ``k`` sets the
    speed (DCRNN uses 2000 batches).
    """
    if k <= 0:
        raise DiststError(f"scheduled sampling: decay k={k} must be > 0 (DCRNN uses 2000)")
    z = step / k
    if z > 700:  # exp overflow: the probability is 0 to float precision anyway
        return 0.0
    return float(k / (k + math.exp(z)))


def check_sizes(model: str, **sizes: int) -> None:
    """Every size must be an integer >= 1; the error names the model and the key."""
    for key, val in sizes.items():
        if isinstance(val, bool) or not isinstance(val, numbers.Integral) or val < 1:
            raise DiststError(f"{model}: {key}={val!r} must be an integer >= 1; fix "
                              f"model.params.{key} (or the data's {key})")


def check_input(model: str, x: torch.Tensor, input_len: int, num_nodes: int,
                input_dim: int) -> None:
    """Fail early with a readable message when the batch does not match the model's sizes."""
    if x.dim() != 4 or x.shape[1] != input_len or x.shape[2] != num_nodes or \
            x.shape[3] != input_dim:
        raise DiststError(
            f"model {model}: input batch has shape {list(x.shape)} but the model was built for "
            f"[B, input_len={input_len}, num_nodes={num_nodes}, input_dim={input_dim}]; "
            "build the model with the data's sizes"
        )


def check_targets(model: str, targets: torch.Tensor | None, teacher_forcing: float,
                  batch: int, horizon: int, num_nodes: int, output_dim: int) -> bool:
    """Whether scheduled sampling is active; validates ``targets`` when it is."""
    if not 0.0 <= float(teacher_forcing) <= 1.0:
        raise DiststError(f"model {model}: teacher_forcing={teacher_forcing} must be a "
                          "probability in [0, 1]")
    if teacher_forcing <= 0.0:
        return False
    if targets is None:
        raise DiststError(f"model {model}: teacher_forcing={teacher_forcing} > 0 needs targets; "
                          "pass targets=y or teacher_forcing=0")
    want = (batch, horizon, num_nodes, output_dim)
    if tuple(targets.shape) != want:
        raise DiststError(f"model {model}: targets have shape {list(targets.shape)}, "
                          f"expected {list(want)} [B, horizon, N, output_dim]")
    return True


def coin(p: float) -> bool:
    """One Bernoulli(p) draw from torch's global generator (seeded by the engine)."""
    if p >= 1.0:
        return True
    return bool(torch.rand(()) < p)


def node_parameter(num_nodes: int, dim: int, std: float = 0.1) -> torch.nn.Parameter:
    """A per-node parameter ``[num_nodes, dim]`` ~ N(0, std^2), drawn from a generator of its
    own (seeded from torch's initial seed) so that it consumes none of the global random
    stream: the shared parameters created after it are then the same whatever the number of
    local nodes, i.e. the same in every part of a partitioned run as in one process. The engine
    overwrites it from the nodes' global ids anyway (set from outside the model)."""
    g = torch.Generator().manual_seed(torch.initial_seed() % (2**63))
    return torch.nn.Parameter(torch.randn(num_nodes, dim, generator=g) * std)
