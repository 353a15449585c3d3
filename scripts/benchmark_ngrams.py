"""Benchmark of longer contexts: k-gram counting, Kneser–Ney's fit, and nltk.lm as the peer.

    python scripts/benchmark_ngrams.py [--repeats 3] [--nltk-order 3] [--json F]

Counting: bigramlab.counting.ngrams.count_ngrams on the `words` list written out as a text file
(MB/s of its UTF-8 text, every split counted), orders (tokens of context) 1 to 6. Kneser–Ney:
fitting bigramlab.models.kneser_ney.KneserNey on `words` train counts and scoring every context of
the data, at
k = 5 (6-grams) and 6. nltk.lm (pip install nltk): its Lidstone and KneserNeyInterpolated models
fitted on names.txt's train words (data/names.txt) and their perplexity on its dev words, against
bigramlab's additive and Kneser–Ney models on the same words: time and the NLL each reports.
Every time is a median over --repeats repeats (nltk's: one run, it is slow).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from bigramlab.counting.ngrams import count_ngrams, ngram_counts_of_words
from bigramlab.data.corpora import EnglishWords, TextFile
from bigramlab.data.vocab import SPLITS, Vocab, split_words
from bigramlab.models.kneser_ney import KneserNey
from bigramlab.models.smoothing import counted_model

ROOT = Path(__file__).resolve().parents[1]
SPLIT = (0.8, 0.1, 0.1)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def counting(path: Path, repeats: int) -> list[dict]:
    corpus = TextFile(str(path))
    megabytes = path.stat().st_size / 1e6
    rows = []
    for k in range(1, 7):
        seconds = median_time(lambda k=k: count_ngrams(corpus, k, SPLIT, 42), repeats)
        contexts = len(count_ngrams(corpus, k, SPLIT, 42).contexts)
        rows.append({"k": k, "seconds": seconds, "MB/s": megabytes / seconds, "contexts": contexts})
        print(
            f"count k={k}: {seconds:.3f} s, {megabytes / seconds:.1f} MB/s, {contexts:,} contexts"
        )
    return rows


def kneser_ney(path: Path, repeats: int) -> list[dict]:
    rows = []
    for k in (5, 6):
        counted = count_ngrams(TextFile(str(path)), k, SPLIT, 42)

        def fit(counted=counted, k=k) -> None:
            KneserNey(counted.dense_counts(), counted.contexts, k)

        seconds = median_time(fit, repeats)
        rows.append({"k": k, "seconds": seconds, "contexts": len(counted.contexts)})
        print(f"Kneser-Ney k={k} (fit and every context's distribution): {seconds:.2f} s")
    return rows


def nltk_peer(names: Path, order: int) -> dict:
    """nltk.lm and bigramlab on the same words (names' lecture split): fit and dev NLL."""
    from nltk.lm import KneserNeyInterpolated, Lidstone
    from nltk.lm.preprocessing import padded_everygram_pipeline

    words = TextFile(str(names)).load()
    parts = split_words(words, SPLIT, 42, "lecture")
    train, dev, _ = parts
    k = order - 1
    result: dict = {"order": order}
    for name, make in (("lidstone", lambda: Lidstone(0.1, order)),
                       ("kneser_ney", lambda: KneserNeyInterpolated(order))):  # fmt: skip
        start = time.perf_counter()
        model = make()
        grams, vocab = padded_everygram_pipeline(order, [list(w) for w in train])
        model.fit(grams, vocab)
        fit = time.perf_counter() - start
        start = time.perf_counter()
        # nltk pads with <s> (order - 1 times) and </s>: the same events as `.` padding.
        total, n = 0.0, 0
        for w in dev:
            chars = ["<s>"] * k + list(w) + ["</s>"]
            for i in range(k, len(chars)):
                total -= math.log(model.score(chars[i], chars[i - k : i]))
                n += 1
        score = time.perf_counter() - start
        result[f"nltk_{name}"] = {"fit_s": fit, "score_s": score, "dev_nll": total / n}
        print(f"nltk {name} order {order}: fit {fit:.2f} s, dev score {score:.2f} s, "
              f"dev NLL {total / n:.4f}")  # fmt: skip

    vocab = Vocab.from_words(words)
    for name, smoothing, alpha in (("lidstone", "additive", 0.1), ("kneser_ney", "kneser_ney", 0)):
        start = time.perf_counter()
        contexts, counts = ngram_counts_of_words(dict(zip(SPLITS, parts)), vocab, k)
        model = counted_model(counts, alpha, smoothing, contexts, k)
        seconds = time.perf_counter() - start
        result[f"bigramlab_{name}"] = {"fit_and_score_s": seconds, "dev_nll": model.nll["val"]}
        print(f"bigramlab {name} order {order}: count, fit and score {seconds:.3f} s, "
              f"dev NLL {model.nll['val']:.4f}")  # fmt: skip
    for name in ("lidstone", "kneser_ney"):
        nltk_time = result[f"nltk_{name}"]["fit_s"] + result[f"nltk_{name}"]["score_s"]
        ratio = nltk_time / result[f"bigramlab_{name}"]["fit_and_score_s"]
        result[f"ratio_{name}"] = ratio
        print(f"{name}: nltk.lm takes {ratio:,.0f}x bigramlab's time")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nltk-order", type=int, default=3, help="n of the n-grams (k + 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "words.txt"
        path.write_text("\n".join(EnglishWords().load()) + "\n")
        results["counting"] = counting(path, args.repeats)
        results["kneser_ney"] = kneser_ney(path, args.repeats)
    names = ROOT / "data" / "names.txt"
    if names.is_file():
        results["nltk"] = nltk_peer(names, args.nltk_order)
    else:
        print(f"nltk peer skipped: {names} is not there (python -m bigramlab.train dataset=names "
              "downloads it)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
