"""The processes that count one corpus together: each reads its own byte range (its `part` of
Corpus.byte_chunks), and what they find is exchanged with torch.distributed collectives (gloo on
CPU, NCCL on GPU, across nodes as Lightning set the process group up).

    Shard.this_process()  the shard of this process: (rank, world size) of the default process
                          group, (0, 1) outside one
    Shard.gather          every process's picklable value (a survey of its range), on every one
    Shard.all_gather      every process's tensor of one shape, stacked, on every one
    Shard.merge_counts    the (key, count) pairs of every process summed by key, on every one
    sum_by_key            sorted (key, count) lists summed by key: the merge itself

One process (world size 1) exchanges nothing: its range is the whole corpus.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """Process `rank` of `world_size` counting one corpus."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def this_process(cls) -> Shard:
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def gather(self, value: Any) -> list[Any]:
        """[value of rank 0, …, value of rank world_size - 1], on every process."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def merge_counts(self, keys: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The (key, count) pairs of every process, summed where a key repeats: sorted int64 keys
        and their int64 counts, the same on every process. `keys` (n,) sorted, `counts` (n,)."""
        if self.world_size == 1:
            return keys, counts
        device = _collective_device()
        largest = [int(keys.max(initial=0)), int(counts.max(initial=0))]
        stats = self.all_gather(torch.tensor([len(keys), *largest], device=device))
        sizes = [int(n) for n in stats[:, 0]]
        # The exchange is the pairs' bytes over the process group's transport (loopback TCP for
        # gloo on one machine): int32 wherever every process's keys or counts fit.
        pieces = []
        for values, largest_value in ((keys, stats[:, 1].max()), (counts, stats[:, 2].max())):
            dtype = torch.int32 if largest_value < 2**31 else torch.int64
            # all_gather takes tensors of one size: each process's values padded to the largest.
            padded = torch.zeros(max(sizes), dtype=dtype)
            padded[: len(values)] = torch.from_numpy(values)
            gathered = self.all_gather(padded.to(device))
            pieces.append([g[:n].cpu().numpy() for g, n in zip(gathered, sizes)])
            del gathered
        return sum_by_key(list(zip(*pieces)))

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """(world_size, *tensor.shape): every process's `tensor`, of one shape, on every one."""
        gathered = [torch.empty_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(gathered, tensor)
        return torch.stack(gathered)


def sum_by_key(found: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(key, count) pairs, each list sorted by key, summed where a key repeats: sorted int64 keys
    and their int64 counts."""
    found = [(keys, counts) for keys, counts in found if len(keys)]
    if len(found) <= 1:
        keys, counts = found[0] if found else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        return keys.astype(np.int64, copy=False), counts.astype(np.int64, copy=False)
    keys = np.concatenate([k for k, _ in found])
    counts = np.concatenate([c for _, c in found]).astype(np.int64, copy=False)
    # numpy's stable sort of integers wider than 16 bits is a timsort, which finds the sorted runs
    # and merges them, faster than a sort that does not look for runs (docs/benchmark.md).
    order = np.argsort(keys, kind="stable")
    keys, counts = keys.take(order), counts.take(order)
    del order
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return keys.take(starts).astype(np.int64, copy=False), np.add.reduceat(counts, starts)


def _collective_device() -> torch.device:
    """NCCL exchanges tensors on the process's GPU; gloo on the host."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
