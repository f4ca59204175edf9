"""This process's place in a torch.distributed group, and the collectives the losses need.

The one place that asks whether torch.distributed is initialised: losses, methods and the engine call
`rank_and_size()` or `Distributed.current()`; without a process group they see rank 0 of 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as torch_dist


def rank_and_size() -> tuple[int, int]:
    """(rank, world size) of the default process group, or (0, 1) without one."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist.get_rank(), torch_dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class Distributed:
    """This process's place in a torch.distributed group (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Distributed:
        return cls(*rank_and_size())

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def gather(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from every rank along dim 0, keeping the gradient of this rank's part."""
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over ranks, differentiable."""
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x)
