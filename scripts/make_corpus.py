"""A large text corpus with realistic statistics, for counting benchmarks: words sampled, seeded,
from a character n-gram model of a words file.

    python scripts/make_corpus.py data/names.txt data/names_1g.txt --megabytes 1024 [--context 5]
        [--seed 0] [--shorter 0.2] [--batch 1000000] [--force]

The model: each next character is drawn from the counted distribution (the MLE) of the longest
suffix of the last k characters that the source has as a context, after dropping one character of
context first with probability --shorter. So the words hold the source's n-grams and new ones,
as a larger sample of the same language would. One word a line; a word is cut at --max-length
characters. Words are drawn a batch at a time, every word of the batch one character a step. The
same arguments give the same file. The corpus is written to `<out>.partial` and renamed when it is
whole; an existing `out` is replaced only with --force.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch import Tensor

from bigramlab.counting.ngrams import count_ngrams
from bigramlab.data.corpora import TextFile
from bigramlab.errors import UserError
from bigramlab.keys import next_keys


def suffix_levels(contexts: Tensor, counts: Tensor, V: int, k: int) -> list[tuple[Tensor, Tensor]]:
    """For j = 0 … k: the contexts of j characters the source has (their keys, sorted) and the
    cumulative distribution of the next character after each (its MLE), flat (C_j · V,) float64
    with row r's values offset by r, so that one search over it draws from any row."""
    levels = []
    for j in range(k + 1):
        keys, rows = torch.unique(contexts % V**j, return_inverse=True)
        summed = torch.zeros(len(keys), V, dtype=torch.float64).index_add_(0, rows, counts.double())
        cdf = (summed / summed.sum(dim=1, keepdim=True)).cumsum(dim=1)
        cdf[:, -1] = 1.0
        offset = cdf + torch.arange(len(keys), dtype=torch.float64)[:, None]
        levels.append((keys, offset.flatten()))
    return levels


def sample_batch(
    levels: list[tuple[Tensor, Tensor]], V: int, n: int, max_length: int, shorter: float, generator
) -> np.ndarray:
    """n words as token ids (n, max_length + 1), each followed by 0s (its end)."""
    k = len(levels) - 1
    tokens = torch.zeros(n, max_length + 1, dtype=torch.int64)
    contexts = torch.zeros(n, dtype=torch.int64)
    alive = torch.arange(n)
    for step in range(max_length):
        if len(alive) == 0:
            break
        h = contexts[alive]
        start = k - (torch.rand(len(h), generator=generator) < shorter).long()
        # In (0, 1): at 0 the search would also count the row before's last entry, r + 0.
        u = torch.rand(len(h), generator=generator, dtype=torch.float64).clamp_(min=1e-12)
        drawn = torch.zeros(len(h), dtype=torch.int64)
        todo = torch.ones(len(h), dtype=torch.bool)
        for j in range(k, -1, -1):
            keys, cdf = levels[j]
            which = torch.nonzero(todo & (start >= j))[:, 0]
            suffix = h[which] % V**j
            row = torch.searchsorted(keys, suffix).clamp(max=len(keys) - 1)
            seen = keys[row] == suffix
            which, row = which[seen], row[seen]
            # The tokens whose cumulative probability is below u: row r's entries are r + CDF.
            below = torch.searchsorted(cdf, row.double() + u[which])
            drawn[which] = below - row * V
            todo[which] = False
        if step == max_length - 1:
            drawn.zero_()  # the longest word ends here
        tokens[alive, step] = drawn
        contexts[alive] = next_keys(h, drawn, k, V)
        alive = alive[drawn != 0]
    return tokens.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="a words file, one word a line")
    parser.add_argument("out", type=Path, help="the corpus to write")
    parser.add_argument("--megabytes", type=float, default=1024, help="its size (MiB)")
    parser.add_argument("--context", type=int, default=5, help="k, characters of context")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--shorter", type=float, default=0.2, help="chance of one character less of context"
    )
    parser.add_argument("--batch", type=int, default=1_000_000, help="words drawn at once")
    parser.add_argument("--max-length", type=int, default=24, help="characters a word at most")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args()
    if problem := argument_problem(args):
        fail(problem)
    try:
        counted = count_ngrams(TextFile(str(args.source)), args.context, (1.0,), 0)
    except UserError as e:
        fail(str(e))
    V, k = len(counted.vocab), args.context
    levels = suffix_levels(counted.contexts, counted.dense_counts()["train"], V, k)
    # Byte of each token: the boundary ends a line; characters outside ASCII as UTF-8.
    itos = ["\n", *counted.vocab.itos[1:]]
    encoded = [ch.encode() for ch in itos]
    if any(len(b) != 1 for b in encoded):
        fail(f"{args.source} has characters outside ASCII: use an ASCII words file")
    codes = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    target = int(args.megabytes * 2**20)
    generator = torch.Generator().manual_seed(args.seed)
    partial = args.out.with_name(args.out.name + ".partial")
    try:
        write_corpus(partial, levels, V, codes, target, generator, args)
    except BaseException:  # Ctrl-C or a full disk: no half-written corpus is left
        partial.unlink(missing_ok=True)
        raise
    partial.replace(args.out)
    print(f"\nwrote {args.out}: {args.out.stat().st_size:,} bytes", file=sys.stderr)


def write_corpus(
    partial: Path,
    levels: list[tuple[Tensor, Tensor]],
    V: int,
    codes: np.ndarray,
    target: int,
    generator: torch.Generator,
    args: argparse.Namespace,
) -> None:
    """Words drawn a batch at a time into `partial` until it holds `target` bytes (whole
    lines), with the progress on standard error."""
    written, start = 0, time.perf_counter()
    with open(partial, "wb") as f:
        while written < target:
            tokens = sample_batch(levels, V, args.batch, args.max_length, args.shorter, generator)
            ends = np.argmax(tokens == 0, axis=1)
            keep = np.arange(tokens.shape[1])[None, :] <= ends[:, None]
            text = codes[tokens[keep]].tobytes()
            if written + len(text) > target:  # stop at the line end at or before the target
                text = text[: text.rfind(b"\n", 0, target - written) + 1]
            f.write(text)
            written += len(text)
            rate = written / 2**20 / (time.perf_counter() - start)
            print(f"\r{written / 2**20:,.0f} of {args.megabytes:,.0f} MiB ({rate:.1f} MiB/s)",
                  end="", file=sys.stderr, flush=True)  # fmt: skip
            if not text:
                break


def fail(message: str) -> NoReturn:
    """The commands' failure policy: one `error:` line and exit status 2."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def argument_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, with the fix, or None."""
    if args.context < 1:
        return f"--context {args.context}: give at least 1 character of context, e.g. --context 5"
    if not args.megabytes > 0:
        return f"--megabytes {args.megabytes:g}: give a size above 0, e.g. --megabytes 1024"
    if args.batch < 1 or args.max_length < 1:
        return "--batch and --max-length must be at least 1"
    if not 0 <= args.shorter <= 1:
        return f"--shorter {args.shorter:g}: give a probability in [0, 1], e.g. --shorter 0.2"
    if args.out.is_dir():
        return f"{args.out} is a directory: give a file name, e.g. {args.out / 'corpus.txt'}"
    if not args.out.parent.is_dir():
        return f"{args.out.parent} does not exist: create it, or write the corpus elsewhere"
    if args.out.exists() and not args.force:
        return f"{args.out} exists: add --force to replace it, or choose another name"
    return None


if __name__ == "__main__":
    main()
