"""Data-parallel training under ``torchrun``: the process group, the model wrapper and each rank's batches.

``torchrun --nproc_per_node N script.py`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`start`
then joins the group (NCCL on GPUs, gloo on CPUs) and gives each rank its own GPU. The batches are cut
here rather than by torch's ``DistributedSampler``: rank r takes every N-th index of the global batch,
so that the N ranks' batches together are exactly the global batch one process takes (the same
gradient, up to float summation order), and an interrupted epoch resumes at its next batch.
"""

from __future__ import annotations

import os

import torch

__all__ = ["Ranks", "epoch_batches", "mean_over_ranks", "start", "wrap"]


class Ranks:
    """This process's ``rank`` among ``world`` training processes (0 of 1 without torchrun)."""

    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def main(self) -> bool:
        """Whether this process writes files and shows progress (rank 0)."""
        return self.rank == 0


def start(device: torch.device) -> tuple[Ranks, torch.device]:
    """Join torchrun's process group when there is one (once per process) and return the ranks and this
    rank's device (``cuda:LOCAL_RANK`` on GPUs)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Ranks(), device
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size()), device


def wrap(model, ranks: Ranks, device: torch.device):
    """``model`` in DistributedDataParallel when there are several ranks, else as it is."""
    if ranks.world == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def epoch_batches(n: int, batch_size: int, ranks: Ranks, seed: int, epoch: int, shuffle: bool) -> list[list[int]]:
    """This rank's batches of epoch ``epoch`` over ``n`` items: a permutation drawn from (seed, epoch) (or
    the items in order), cut into global batches of ``batch_size`` (the last incomplete one dropped),
    each shared among the ranks index by index (``batch_size / world`` each)."""
    order = list(range(n))
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch)).tolist()
    mine = order[: n // batch_size * batch_size][ranks.rank :: ranks.world]
    per_rank = batch_size // ranks.world
    return [mine[k : k + per_rank] for k in range(0, len(mine), per_rank)]


def mean_over_ranks(value: float, ranks: Ranks, device: torch.device) -> float:
    """The mean of ``value`` over the ranks (itself with one rank); ``device``: this rank's (NCCL reduces on GPUs)."""
    if ranks.world == 1:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t) / ranks.world
