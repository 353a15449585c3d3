"""Sorting the keys of a count (bigramlab.counting.sorting): every sort gives the same array, and
the faster one on this machine is the one used."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bigramlab.counting import sorting
from bigramlab.counting.ngrams import _unique_counts
from bigramlab.counting.sorting import SORTS, fastest_sort, sort_keys


@pytest.fixture(autouse=True)
def fresh_choice():
    """Each test chooses anew, and leaves no choice behind for the tests after it."""
    fastest_sort.cache_clear()
    yield
    fastest_sort.cache_clear()


@settings(max_examples=60, deadline=None)
@given(
    keys=st.lists(st.integers(0, 2**31 - 1), max_size=300),
    wide=st.booleans(),
    sort=st.sampled_from(sorted(SORTS)),
)
def test_every_sort_gives_the_keys_sorted_and_unique_counts_np_uniques(keys, wide, sort):
    # Wide keys past 32 bits, as those of k = 6.
    values = np.array(keys, dtype=np.int64) * 16 if wide else np.array(keys, dtype=np.int32)
    assert SORTS[sort](values).tolist() == sorted(keys if not wide else [16 * k for k in keys])
    original = sorting.fastest_sort
    try:
        sorting.fastest_sort = lambda dtype: sort
        found, counts = _unique_counts(values)
    finally:
        sorting.fastest_sort = original
    expected, expected_counts = np.unique(values, return_counts=True)
    assert np.array_equal(found, expected) and np.array_equal(counts, expected_counts)
    assert found.dtype == values.dtype


def test_the_faster_sort_is_chosen_once_for_each_width_and_used(monkeypatch):
    used: list[str] = []

    def slow(keys: np.ndarray) -> np.ndarray:
        used.append("slow")
        time.sleep(0.02)  # past any noise in timing the same np.sort
        return np.sort(keys)

    def fast(keys: np.ndarray) -> np.ndarray:
        used.append("fast")
        return np.sort(keys)

    monkeypatch.setattr(sorting, "SORTS", {"slow": slow, "fast": fast})
    keys = np.array([5, 3, 9, 3], dtype=np.int64)
    assert np.array_equal(sort_keys(keys), [3, 3, 5, 9])
    assert used.count("slow") == 3 and used.count("fast") == 4  # timed 3 times each, then used
    used.clear()
    sort_keys(keys)
    assert used == ["fast"]  # the choice is kept
    sort_keys(keys.astype(np.int32))
    assert used.count("slow") == 3  # int32 is timed on its own
