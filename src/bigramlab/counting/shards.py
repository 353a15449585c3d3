"""The processes that count one corpus together: each reads its own byte range (its `part` of
Corpus.byte_chunks), and what they find is exchanged with torch.distributed collectives (gloo on
CPU, NCCL on GPU, across nodes as Lightning set the process group up).

    Shard.this_process()  the shard of this process: (rank, world size) of the default process
                          group, (0, 1) outside one
    Shard.gather          every process's picklable value (a survey of its range), on every one
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
        sizes = self.gather(len(keys))
        # all_gather takes tensors of one size: each process's pairs padded to the largest.
        padded = torch.zeros(2, max(sizes), dtype=torch.int64)
        padded[0, : len(keys)] = torch.from_numpy(keys)
        padded[1, : len(keys)] = torch.from_numpy(counts)
        device = _collective_device()
        gathered = [torch.empty_like(padded, device=device) for _ in range(self.world_size)]
        dist.all_gather(gathered, padded.to(device))
        pieces = [g[:, :n].cpu().numpy() for g, n in zip(gathered, sizes)]
        del gathered
        return sum_by_key([(p[0], p[1]) for p in pieces])


def sum_by_key(found: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(key, count) pairs, each list sorted by key, summed where a key repeats: sorted int64 keys
    and their int64 counts."""
    found = [(keys, counts) for keys, counts in found if len(keys)]
    if len(found) <= 1:
        keys, counts = found[0] if found else (np.zeros(0, np.int64), np.zeros(0, np.int64))
        return keys.astype(np.int64), counts
    keys = np.concatenate([k for k, _ in found]).astype(np.int64, copy=False)
    counts = np.concatenate([c for _, c in found])
    # One stable sort merges the sorted runs (torch's radix sort, as in ngrams._unique_counts).
    order = torch.sort(torch.from_numpy(keys), stable=True).indices.numpy()
    keys, counts = keys.take(order), counts.take(order)
    del order
    first = np.empty(len(keys), dtype=bool)
    first[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=first[1:])
    starts = np.flatnonzero(first)
    return keys.take(starts), np.add.reduceat(counts, starts)


def _collective_device() -> torch.device:
    """NCCL exchanges tensors on the process's GPU; gloo on the host."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
