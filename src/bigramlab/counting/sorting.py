"""Sorting integer keys, the step that bounds counting at k >= 4: with whichever of numpy's and
torch's sorts is the faster on this machine.

    sort_keys    the 1-D int32 or int64 keys, sorted (a new array)

np.sort of integers is a vectorised quicksort where numpy has one for the CPU (x86-simd-sort:
AVX-512, AVX2), a scalar introsort elsewhere; torch's stable sort of integers is a radix sort,
the same everywhere. Which is faster depends on the CPU, by several times either way on the
machines of docs/benchmark.md. So the first sort of each key width in a process times both on the
same random keys and keeps the faster. Both give the same sorted array, so the choice changes
the time a count takes, never its result.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
import torch

# Keys timed per sort: large enough that both sorts run at their per-key speed (a few ms each).
PROBE_KEYS = 1 << 17
# The widest keys counted in each width: (part, context, next) at k = 5 and k = 6 with V = 27.
PROBE_RANGE = {np.dtype(np.int32): 2**31 - 1, np.dtype(np.int64): 2**35}


def _numpy_sort(keys: np.ndarray) -> np.ndarray:
    return np.sort(keys)


def _torch_sort(keys: np.ndarray) -> np.ndarray:
    return torch.sort(torch.from_numpy(keys), stable=True).values.numpy()


SORTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "numpy": _numpy_sort,
    "torch": _torch_sort,
}


@functools.cache
def fastest_sort(dtype: np.dtype) -> str:
    """The name (of SORTS) of the faster sort of `dtype` keys on this machine: the best of three
    timings of each on PROBE_KEYS random keys, in this process's threads."""
    keys = np.random.default_rng(0).integers(0, PROBE_RANGE[dtype], PROBE_KEYS, dtype=dtype)
    best = {}
    for name, sort in SORTS.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sort(keys)
            times.append(time.perf_counter() - start)
        best[name] = min(times)
    return min(best, key=best.__getitem__)


def sort_keys(keys: np.ndarray) -> np.ndarray:
    """`keys` (n,) int32 or int64, sorted, as a new array: by fastest_sort's choice."""
    return SORTS[fastest_sort(keys.dtype)](keys)
