"""Data-parallel training set-up: one process per device, launched by ``torchrun``.

    torchrun --nproc-per-node 2 -m rnnkit train classify --data names.csv --max-steps 500

``torchrun`` sets RANK, LOCAL_RANK and WORLD_SIZE (and MASTER_ADDR/PORT); ``init()`` reads them and
joins the process group: gloo on CPU; with a GPU per process NCCL for CUDA tensors and gloo for the
CPU ones (NCCL carries CUDA tensors only, and the trainer also exchanges CPU tensors: random states,
the early-stopping flag). Every rank builds the same
model from the same seed, walks the same sequence of *global* batches and trains on its contiguous
slice of each; DDP averages the gradients. The trainer scales each rank's summed loss by
world_size / (tokens in the global batch) so the averaged gradient is exactly the gradient of the
global batch's mean loss — single-process training on the same global batch, up to float rounding.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .options import OptionError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init(device: str = "auto") -> tuple[DistInfo, torch.device]:
    """Joins the process group if launched with WORLD_SIZE > 1; returns the ranks and this process's
    device (``device``: "auto", "cpu", "cuda" or "cuda:N").

    Under torchrun each process takes the GPU of its local rank (NCCL cannot share one GPU between two
    processes): ``auto`` runs every process on the CPU (gloo) where torchrun starts more processes on a
    machine (LOCAL_WORLD_SIZE) than it has CUDA devices, and ``cuda`` is refused there, as is ``cuda:N``.
    Under a launcher that sets no LOCAL_WORLD_SIZE (a SLURM or mpirun script), a process whose LOCAL_RANK
    has no GPU is refused, whatever the device."""
    device = str(device)  # (a torch.device too)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", device):  # (a misspelt one trained on the CPU, silently)
        raise OptionError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available")
    if world > 1:
        local_world, gpus = os.environ.get("LOCAL_WORLD_SIZE"), torch.cuda.device_count()
        if use_cuda and local_world is not None and int(local_world) > gpus:  # (torchrun sets it)
            if device != "auto":
                raise OptionError(f"device {device!r}: torchrun started {local_world} processes on this machine, "
                                  f"which has {gpus} CUDA device(s), and each process needs a GPU of its own; start "
                                  f"--nproc-per-node {gpus} (or fewer), or use device 'cpu'")
            use_cuda = False  # (every process of the machine sees the same count, so all decide alike)
        elif use_cuda and local >= gpus:  # another launcher: only this process's own rank is known
            raise OptionError(f"device {device!r}: this process's LOCAL_RANK is {local}, but this machine has {gpus} "
                              f"CUDA device(s), and each process needs a GPU of its own; start fewer processes per "
                              f"machine, or use device 'cpu'")
        if use_cuda and device.startswith("cuda:"):
            raise OptionError(f"device {device!r}: under torchrun each process takes the GPU of its local rank; "
                              f"use device 'cuda' (or 'auto')")
        dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        backend = "cpu:gloo,cuda:nccl" if use_cuda else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        return DistInfo(rank, world, local, backend), dev
    if use_cuda:
        return DistInfo(), torch.device(device if device.startswith("cuda") else "cuda")
    return DistInfo(), torch.device("cpu")


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_(t: torch.Tensor, info: DistInfo, src: int = 0) -> torch.Tensor:
    if info.enabled:
        dist.broadcast(t, src=src)
    return t


def all_gather_cat(t: torch.Tensor, info: DistInfo, dim: int) -> torch.Tensor:
    """Concatenates every rank's ``t`` along ``dim``, in rank order; the ranks' sizes along ``dim`` may
    differ (a batch that does not divide evenly), every other dimension must agree."""
    if not info.enabled:
        return t
    size = torch.tensor([t.shape[dim]], dtype=torch.long, device=t.device)
    sizes = [torch.empty_like(size) for _ in range(info.world_size)]
    dist.all_gather(sizes, size)
    sizes = [int(n) for n in sizes]
    padded = list(t.shape)
    padded[dim] = max(sizes)
    mine = t.new_zeros(padded)
    mine.narrow(dim, 0, t.shape[dim]).copy_(t)
    parts = [torch.empty_like(mine) for _ in range(info.world_size)]
    dist.all_gather(parts, mine)
    return torch.cat([p.narrow(dim, 0, n) for p, n in zip(parts, sizes)], dim=dim)


def rank_slice(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[lo, hi)``: rank ``rank``'s contiguous share of ``n`` rows among ``world`` (the last ranks take
    the extra rows) — how a batch is sharded, and so how a carried state is split again on resume."""
    return rank * n // world, (rank + 1) * n // world


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
