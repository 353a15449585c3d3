"""bigramlab.arpa's text of a hand-made listing, read line by line: the header's counts, each
n-gram's log10 probability and backoff column, the stand-ins for <unk>, <s>, zero and whitespace,
and the histories added so that every n-gram's prefix and suffix are listed."""

from __future__ import annotations

import math

import torch

from bigramlab.arpa import END, START, Listing, arpa_text, arpa_token, history


def sections(text: str) -> dict[str, list[str]]:
    """{"\\data\\": [...], "\\1-grams:": [...], ...}: each section's non-empty lines."""
    out: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("\\") and line != "\\end\\":
            current = line
            out[current] = []
        elif line and current is not None and line != "\\end\\":
            out[current].append(line)
    return out


def test_a_bigram_listing_is_written_line_for_line() -> None:
    itos = ".ab"
    p_start = torch.tensor([0.0, 0.75, 0.25], dtype=torch.float64)  # P(. | <s>) = 0: -99
    p_a = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    unigrams = torch.full((3,), 1 / 3, dtype=torch.float64)
    listing = Listing(
        {(START,): p_start, ("a",): p_a}, lambda h: unigrams.expand(len(h), 3), unigrams, 1
    )
    text = arpa_text(itos, listing)
    got = sections(text)
    assert got["\\data\\"] == ["ngram 1=5", "ngram 2=6"]
    third = f"{math.log10(1 / 3):.7f}"
    assert got["\\1-grams:"] == [
        f"{-math.log10(4):.7f}\t<unk>\t0",  # 1 / (V + 1)
        "-99.0000000\t<s>\t0",
        f"{third}\t{END}",  # a target only: no backoff column
        f"{third}\ta\t0",
        f"{third}\tb\t0",
    ]
    assert got["\\2-grams:"] == [
        f"-99.0000000\t{START} {END}",
        f"{math.log10(0.75):.7f}\t{START} a",
        f"{math.log10(0.25):.7f}\t{START} b",
        f"{math.log10(0.5):.7f}\ta {END}",
        f"{math.log10(0.25):.7f}\ta a",
        f"{math.log10(0.25):.7f}\ta b",
    ]
    assert text.rstrip().endswith("\\end\\")


def test_the_prefix_and_suffix_of_every_listed_history_are_added_from_lower() -> None:
    """A listed history (a, b) needs (a) (its prefix) and (b) (its suffix) at the order below:
    they come from `lower`, asked once for the histories missing."""
    itos = ".ab"
    row = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    asked: list[list[tuple[str, ...]]] = []

    def lower(hists: list[tuple[str, ...]]) -> torch.Tensor:
        asked.append(hists)
        return row.expand(len(hists), 3)

    text = arpa_text(itos, Listing({("a", "b"): row}, lower, row, 2))
    got = sections(text)
    assert asked == [[("a",), ("b",)]]
    assert got["\\data\\"] == ["ngram 1=5", "ngram 2=6", "ngram 3=3"]
    assert [line.split("\t")[1] for line in got["\\3-grams:"]] == [f"a b {END}", "a b a", "a b b"]
    assert all(line.count("\t") == 2 for line in got["\\2-grams:"] if not line.endswith(END))


def test_tokens_and_histories() -> None:
    assert (
        arpa_token("a") == "a" and arpa_token(" ") == "<U+0020>" and arpa_token("\t") == "<U+0009>"
    )
    assert history([0, 0, 1], ".ab") == (START, "a")  # the padding is one <s>
    assert history([1, 2], ".ab") == ("a", "b")
