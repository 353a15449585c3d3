"""ARPA text of a model of contexts of k tokens, exact for KenLM's scoring.

KenLM scores a word `<s> c1 … cn </s>` one token at a time: it takes the longest listed n-gram
ending in the token, and multiplies in the backoff weights of the histories it skipped. bigramlab's
contexts are padded with `.` at a word's start instead: the padded context `..ab` is KenLM's
history `<s> a b` (the padding is forced, so one `<s>` says as much as any number of `.`s).

What is written (every backoff weight is 1, log10 0):

- `listed`: histories whose whole distribution (every target) is written, with the model's
  probabilities. The histories KenLM queries directly (a word's start, `<s> …`, and contexts of k
  characters) that the model knows are among them; so are, for models that back off, the shorter
  histories KenLM backs off to.
- `lower(histories)`: the distributions (m, V) of histories that are not listed, where an n-gram
  of one must still be written because a longer n-gram needs it (ARPA lists the prefix of every
  n-gram, and KenLM expects the suffix) and KenLM may back off to it: the model's distribution at
  that shorter context.
- `unigrams`: where every backoff ends.

A history KenLM queries that is not listed backs off to shorter ones: the caller lists so that this
gives the model's value (Kneser–Ney: an unseen context takes the lower order whole; onehot and
additive: an unseen context is uniform, and so are their `lower` and `unigrams`; interpolated: the
logits of the longest suffix that has a row, which is that suffix's listed distribution).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from bigramlab.keys import context_keys

ZERO_LOG10 = -99.0  # ARPA's stand-in for log10(0)
START, END, UNKNOWN = "<s>", "</s>", "<unk>"

History = tuple[str, ...]


class Listing(NamedTuple):
    """What arpa_text writes a model from (a LanguageModel's arpa_listing): the histories listed
    whole, the distributions of shorter ones that ARPA must add, the unigrams, and the context
    length k the file reads (its n-grams are of k + 1 tokens at most)."""

    listed: dict[History, Tensor]  # P(· | history) (V,) of each
    lower: Callable[[list[History]], Tensor]  # (m, V) for m histories
    unigrams: Tensor  # (V,)
    context: int


def arpa_token(ch: str) -> str:
    """A character as an ARPA token: itself, or `<U+XXXX>` where it is whitespace (ARPA separates
    tokens by whitespace) or not printable."""
    return f"<U+{ord(ch):04X}>" if ch.isspace() or not ch.isprintable() else ch


def history(tokens: list[int], itos: str) -> History:
    """KenLM's history of a padded context (token ids, oldest first, `.` = 0 only as padding)."""
    chars = tokens
    while chars and chars[0] == 0:
        chars = chars[1:]
    names = tuple(arpa_token(itos[t]) for t in chars)
    return (START, *names) if len(chars) < len(tokens) else names


def by_length(
    histories: list[History], itos: str, probs: Callable[[Tensor, int], Tensor]
) -> Tensor:
    """probs(keys, length) of unpadded histories (a leading <s> dropped: KenLM's backoff drops
    it too), computed together for each length: (m, V) in the order given."""
    stoi = {arpa_token(c): i for i, c in enumerate(itos) if i}
    chars = [[stoi[t] for t in hist if t != START] for hist in histories]
    out = torch.empty(len(histories), len(itos), dtype=torch.float64)
    for length in sorted({len(c) for c in chars}):
        which = [i for i, c in enumerate(chars) if len(c) == length]
        tokens = torch.tensor([chars[i] for i in which], dtype=torch.int64).view(len(which), length)
        out[which] = probs(context_keys(tokens, len(itos)), length)
    return out


def arpa_text(itos: str, listing: Listing) -> str:
    """The ARPA file of a model's `listing`: its `listed` {history: P(· | history) (V,)}, `lower`
    for the histories ARPA needs that are not listed, `unigrams` (V,) (target `.` is `</s>`);
    `<unk>` a unigram of probability 1 / (V + 1), `<s>` -99 as in KenLM's files.

    ARPA lists the prefix of every n-gram, and KenLM expects its suffix too; with every listed
    history's whole distribution written, that holds once the histories are closed under dropping
    their last and their first token: the histories missing are added, from `lower`.
    """
    lower, unigrams = listing.lower, listing.unigrams
    V = len(itos)
    targets = [END] + [arpa_token(ch) for ch in itos[1:]]
    listed = dict(listing.listed)
    frontier = set(listed)
    while frontier:
        needed = sorted(
            {
                shorter
                for hist in frontier
                for shorter in (hist[:-1], hist[1:])
                if shorter and shorter not in listed
            }
        )
        if needed:
            listed.update(zip(needed, lower(needed)))
        frontier = set(needed)
    by_length: dict[int, list[History]] = {}
    for hist in sorted(listed):
        by_length.setdefault(len(hist), []).append(hist)
    order = max(by_length, default=0) + 1

    def log10(rows: Tensor) -> list[list[float]]:
        rows = rows.double()
        return torch.where(rows > 0, rows.log10(), ZERO_LOG10).clamp_min(ZERO_LOG10).tolist()

    backoff = "\t0" if order > 1 else ""
    first = [f"{-math.log10(V + 1):.7f}\t{UNKNOWN}{backoff}", f"{ZERO_LOG10:.7f}\t{START}{backoff}"]
    first += [
        f"{p:.7f}\t{t}{'' if t == END else backoff}"
        for t, p in zip(targets, log10(unigrams[None])[0])
    ]
    sections = [first]
    for n in range(2, order + 1):
        hists = by_length[n - 1]
        bo = "\t0" if n < order else ""
        ends = [f" {t}{'' if t == END else bo}" for t in targets]
        lines = []
        for hist, row in zip(hists, log10(torch.stack([listed[h] for h in hists]))):
            head = "\t" + " ".join(hist)
            lines += [f"{p:.7f}{head}{end}" for p, end in zip(row, ends)]
        sections.append(lines)
    out = ["", "\\data\\"] + [f"ngram {n}={len(lines)}" for n, lines in enumerate(sections, 1)]
    for n, lines in enumerate(sections, 1):
        out += ["", f"\\{n}-grams:", *lines]
    out += ["", "\\end\\", ""]
    return "\n".join(out)
