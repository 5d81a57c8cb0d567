"""The result every partitioner returns (METIS, GPA, ...): one part id per node."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from distst.errors import DiststError


@dataclass
class Partition:
    """``assignment[i]`` is the part (0..num_parts-1) that owns node ``i``.

    ``params`` records everything that determines the result (method options, seed), so
    that a plan can say how it was made; ``seconds`` is the wall time of the partitioner.
    """

    assignment: np.ndarray
    num_parts: int
    method: str
    params: dict = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.assignment = np.asarray(self.assignment, dtype=np.int64)
        if self.assignment.ndim != 1:
            raise DiststError(f"partition: assignment must be [N], got {self.assignment.shape}")
        if self.assignment.size and (self.assignment.min() < 0
                                     or self.assignment.max() >= self.num_parts):
            raise DiststError(
                f"partition ({self.method}): part ids must lie in 0..{self.num_parts - 1}, "
                f"got {int(self.assignment.min())}..{int(self.assignment.max())}"
            )

    @property
    def num_nodes(self) -> int:
        return int(self.assignment.size)

    def inner_nodes(self, part: int) -> np.ndarray:
        """Node ids owned by ``part``, ascending."""
        return np.flatnonzero(self.assignment == part)

    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignment, minlength=self.num_parts)
