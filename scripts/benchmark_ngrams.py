"""Benchmark of longer contexts: k-gram counting, Kneser–Ney's fit, and nltk.lm as the peer.

    python scripts/benchmark_ngrams.py [--repeats 3] [--nltk-order 3] [--json F]
        [--corpus BIG.txt] [--big BIG_1G.txt] [--training] [--experiments ngram_best,...]
        [--markdown docs/benchmark.md]

Counting: bigramlab.counting.ngrams.count_ngrams on the `words` list written out as a text file
(MB/s of its UTF-8 text, every split counted), orders (tokens of context) 1 to 6, in one process
and in 2 processes of a gloo process group (each counting its own byte range, then merging; every
process's counts checked bitwise against one process's), beside
the floors it is measured against (in one thread, as the counting processes run): one
np.bincount pass over the bytes, a sort of a piece's worth of keys (np.sort and torch's stable
sort, int64 and int32; counting uses whichever is faster, bigramlab.counting.sorting, and the
script prints which) and drawing the split of the file's words. --corpus: the same on
another file (a sample made by scripts/make_corpus.py, say). --big: peak RSS of counting that file
at k = 5 in a process of its own. --training: peak RSS, time and NLLs of training on `words` at k =
6 with interpolated and skipgram features and L-BFGS (history 1, 5 steps), each in a process of its
own. Kneser–Ney: fitting bigramlab.models.kneser_ney.KneserNey on `words` train counts and scoring
every context of the data, at k = 5 (6-grams) and 6. nltk.lm (pip install nltk): its Lidstone and
KneserNeyInterpolated models fitted on names.txt's train words (data/names.txt) and their
perplexity on its dev words, against bigramlab's additive and Kneser–Ney models on the same words:
time and the NLL each reports. --experiments: the whole run of each experiment on names.txt, at
the default threads and at threads=1, each in a process of its own. --markdown: the tables, with
this command, the machine and the date, into the page's block of this script.
Every time is a median over --repeats repeats (nltk's: one run, it is slow).
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bigramlab.counting.ngrams import NgramCounts, count_ngrams, ngram_counts_of_words
from bigramlab.counting.sorting import fastest_sort
from bigramlab.data import corpora
from bigramlab.data.corpora import EnglishWords, TextFile
from bigramlab.data.vocab import SPLITS, Vocab, split_assignment, split_words
from bigramlab.models.kneser_ney import KneserNey
from bigramlab.models.smoothing import counted_model
from bigramlab.writers.markdown import provenance, replace_block

ROOT = Path(__file__).resolve().parents[1]
SPLIT = (0.8, 0.1, 0.1)


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def floors(path: Path, repeats: int) -> dict:
    """MB/s of the passes counting cannot beat, in one thread as the counting processes run: one
    np.bincount pass over the bytes; a sort of a piece's worth of keys (one key a byte, as many
    as a piece of CHUNK_BYTES or the whole file holds, the count's unit of work; as wide as the
    keys of k = 6 at V = 27, or in int32 those of k = 4 and 5), by np.sort and by torch's stable
    sort, in int64 and int32 (counting sorts with the faster: the choice in this process is
    printed); and drawing the split (bigramlab.data.vocab.split_assignment of the file's words),
    which every process does whole. The sorts' rates are a piece's megabytes over its sort's
    time."""
    data = path.read_bytes()
    megabytes = len(data) / 1e6
    piece = min(len(data), corpora.CHUNK_BYTES)
    # As wide as the keys of k = 6 at V = 27 (3 parts x 27^7 < 2^35), and of k = 4, 5 (int32).
    keys = np.random.default_rng(0).integers(0, 2**35, piece)
    narrow = np.random.default_rng(1).integers(0, 2**31, piece, dtype=np.int32)
    n_words = data.count(b"\n")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    found = {
        "bincount": median_time(
            lambda: np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256), repeats
        ),
        "np_sort_int64": median_time(lambda: np.sort(keys), repeats) * len(data) / piece,
        "np_sort_int32": median_time(lambda: np.sort(narrow), repeats) * len(data) / piece,
        "torch_sort_int64": median_time(
            lambda: torch.sort(torch.from_numpy(keys), stable=True), repeats
        )
        * len(data)
        / piece,
        "torch_sort_int32": median_time(
            lambda: torch.sort(torch.from_numpy(narrow), stable=True), repeats
        )
        * len(data)
        / piece,
        "split_draw": median_time(lambda: split_assignment(n_words, SPLIT, 42), repeats),
    }
    chosen = {str(a.dtype): fastest_sort(a.dtype) for a in (narrow, keys)}
    torch.set_num_threads(threads)
    rates = {name: megabytes / seconds for name, seconds in found.items()}
    print(
        f"floors ({piece / 2**20:.1f} MiB pieces, one thread): "
        + ", ".join(f"{name} {rate:.0f} MB/s" for name, rate in rates.items())
        + "; counting's sort here: "
        + ", ".join(f"{dtype} {name}" for dtype, name in chosen.items())
    )
    return rates


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _count_worker(rank: int, world_size: int, port: int, path: str, repeats: int, out: str) -> None:
    """Rank `rank` of a gloo group: count `path` at k = 1..6, `repeats` times each, between
    barriers; rank 0 writes the median seconds per k."""
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    corpus = TextFile(path)
    seconds, counted = {}, {}
    for k in range(1, 7):
        count_ngrams(corpus, k, SPLIT, 42)  # warm: the page cache, numpy's first calls
        times = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            found = count_ngrams(corpus, k, SPLIT, 42)
            dist.barrier()
            times.append(time.perf_counter() - start)
        seconds[k] = statistics.median(times)
        counted[k] = (found.vocab.itos, found.n_words, found.contexts, found.counts)
    if rank == 0:
        Path(out).write_text(json.dumps(seconds))
    torch.save(counted, f"{out}.rank{rank}.pt")
    dist.destroy_process_group()


def same_counts(found: tuple, expected: NgramCounts) -> bool:
    """Whether a process's (vocabulary, words per split, contexts, counts) are bitwise
    `expected`'s."""
    itos, n_words, contexts, counts = found
    return (
        (itos, n_words) == (expected.vocab.itos, expected.n_words)
        and torch.equal(contexts, expected.contexts)
        and counts.keys() == expected.counts.keys()
        and all(torch.equal(counts[s].to_dense(), expected.counts[s].to_dense()) for s in counts)
    )


def counting(path: Path, repeats: int) -> list[dict]:
    """Seconds, MB/s a process, and the speed-up of 2 processes over 1, for k = 1..6; and whether
    each process's counts are bitwise those of a count in this process."""
    megabytes = path.stat().st_size / 1e6
    seconds, counted = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for world_size in (1, 2):
            out = str(Path(tmp) / f"{world_size}.json")
            args = (world_size, free_port(), str(path), repeats, out)
            mp.start_processes(_count_worker, args, nprocs=world_size, start_method="fork")
            seconds[world_size] = {int(k): v for k, v in json.loads(Path(out).read_text()).items()}
            counted[world_size] = [torch.load(f"{out}.rank{r}.pt") for r in range(world_size)]
    rows = []
    for k in range(1, 7):
        one, two = seconds[1][k], seconds[2][k]
        expected = count_ngrams(TextFile(str(path)), k, SPLIT, 42)
        contexts = len(expected.contexts)
        same = all(same_counts(found[k], expected) for c in counted.values() for found in c)
        row = {
            "k": k,
            "seconds": one,
            "MB/s": megabytes / one,
            "seconds_2": two,
            "MB/s_per_process_2": megabytes / 2 / two,
            "speedup_2": one / two,
            "contexts": contexts,
            "bitwise_equal": same,
        }
        rows.append(row)
        print(
            f"count k={k}: 1 process {one:.3f} s ({megabytes / one:.1f} MB/s); 2 processes "
            f"{two:.3f} s ({megabytes / 2 / two:.1f} MB/s each, {one / two:.2f}x); "
            f"{contexts:,} contexts; counts of 1 and 2 processes "
            f"{'bitwise equal' if same else 'DIFFERENT'}"
        )
        if not same:
            raise SystemExit(f"the counts of k={k} differ between 1 and 2 processes")
    return rows


def peak_rss_of_counting(path: Path, k: int) -> dict:
    """Peak RSS of a fresh process that counts `path` at context k: its VmHWM (ru_maxrss would
    also hold this process's size, which the child had between fork and exec)."""
    code = (
        "import sys, time; from bigramlab.counting.ngrams import count_ngrams; "
        "from bigramlab.data.corpora import TextFile; start = time.perf_counter(); "
        f"c = count_ngrams(TextFile(sys.argv[1]), {k}, {SPLIT}, 42); "
        "print(time.perf_counter() - start, len(c.contexts), "
        "sum(N._nnz() for N in c.counts.values()), "
        "next(int(line.split()[1]) for line in open('/proc/self/status') "
        "if line.startswith('VmHWM')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True
    )
    seconds, contexts, grams, peak = done.stdout.split()
    megabytes = path.stat().st_size / 1e6
    result = {
        "k": k,
        "megabytes": megabytes,
        "seconds": float(seconds),
        "contexts": int(contexts),
        "distinct_ngrams_by_split": int(grams),
        "peak_rss_mib": int(peak) / 1024,
    }
    print(
        f"count {path.name} ({megabytes:,.0f} MB) at k={k}: {float(seconds):.1f} s "
        f"({megabytes / float(seconds):.1f} MB/s), {int(contexts):,} contexts, "
        f"{int(grams):,} (n-gram, split) pairs, peak RSS {result['peak_rss_mib']:,.0f} MiB"
    )
    return result


# words at k = 6 with L-BFGS: the documented configuration of docs/benchmark.md (5 steps).
TRAINING = (
    "dataset=words model.context=6 optim=lbfgs optim.history_size=1 model.reg=0.0003 "
    "trainer.max_steps=5"
)


def peak_rss_of_training(features: str | None, log_dir: Path, settings: str = TRAINING) -> dict:
    """Peak RSS (VmHWM, read at exit) and wall time of `python -m bigramlab.train` with
    `settings` (words at k = 6, L-BFGS) and `features` (None: the settings' own) in a process of
    its own, and the NLLs of its metrics.json."""
    settings = settings if features is None else f"{settings} model.features={features}"
    overrides = [*settings.split(), f"paths.log_dir={log_dir}"]
    code = (
        "import atexit, runpy, sys\n"
        "def peak():\n"
        "    hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))\n"
        "    print('PEAK', hwm.split()[1], file=sys.stderr, flush=True)\n"
        "atexit.register(peak)\n"
        "sys.argv = ['train', *sys.argv[1:]]\n"
        "runpy.run_module('bigramlab.train', run_name='__main__')\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code, *overrides], capture_output=True, text=True, cwd=ROOT
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"training {features} failed: {last}")
    peak_kib = int(done.stderr.split("PEAK")[-1].split()[0])
    metrics = json.loads(next((log_dir / "train" / "runs").glob("*/metrics.json")).read_text())
    result = {
        "command": f"python -m bigramlab.train {settings}",
        "seconds": seconds,
        "peak_rss_kib": peak_kib,
        "peak_rss_gb": peak_kib * 1024 / 1e9,
        "val_nll": metrics["val_nll"],
        "test_nll": metrics["test_nll"],
        "threads": metrics.get("threads"),
    }
    print(
        f"train {settings}: {seconds:.0f} s, peak RSS "
        f"{peak_kib:,} KiB ({result['peak_rss_gb']:.2f} GB), val {metrics['val_nll']:.4f} / "
        f"test {metrics['test_nll']:.4f}"
    )
    return result


def kneser_ney(path: Path, repeats: int) -> list[dict]:
    rows = []
    for k in (5, 6):
        counted = count_ngrams(TextFile(str(path)), k, SPLIT, 42)

        def fit(counted=counted, k=k) -> None:
            KneserNey(counted.dense_counts(), counted.contexts, k, counted.vocab.itos)

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
        model = counted_model(counts, alpha, smoothing, contexts, k, itos=vocab.itos)
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
    parser.add_argument("--corpus", type=Path, default=None, help="another file to count")
    parser.add_argument(
        "--big", type=Path, default=None, help="a file whose k = 5 count's peak RSS to measure"
    )
    parser.add_argument(
        "--training",
        action="store_true",
        help="also the peak RSS of training on words at k = 6 (interpolated, skipgram; minutes)",
    )
    parser.add_argument(
        "--experiments",
        default=None,
        help="comma-separated experiments on names.txt (e.g. ngram_best,features_best) whose "
        "whole run to time, at the default threads and at threads=1",
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="a Markdown page (docs/benchmark.md) whose block of this script to rewrite",
    )
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "words.txt"
        path.write_text("\n".join(EnglishWords().load()) + "\n")
        results["floors"] = floors(path, args.repeats)
        results["counting"] = counting(path, args.repeats)
        results["kneser_ney"] = kneser_ney(path, args.repeats)
    if args.corpus:
        results["corpus"] = {
            "path": str(args.corpus),
            "floors": floors(args.corpus, args.repeats),
            "counting": counting(args.corpus, args.repeats),
        }
    if args.big:
        results["big"] = peak_rss_of_counting(args.big, 5)
    if args.training:
        with tempfile.TemporaryDirectory() as tmp:
            results["training"] = [
                peak_rss_of_training(features, Path(tmp) / features)
                for features in ("interpolated", "skipgram")
            ]
    names = ROOT / "data" / "names.txt"
    if args.experiments:
        if not names.is_file():
            raise SystemExit(f"error: --experiments needs {names}: copy names.txt there first")
        results["experiments"] = []
        for experiment in args.experiments.split(","):
            for threads in ("null", "1"):
                with tempfile.TemporaryDirectory() as tmp:
                    settings = f"experiment={experiment} threads={threads}"
                    found = peak_rss_of_training(None, Path(tmp), settings)
                    results["experiments"].append({"experiment": experiment, **found})
    if names.is_file():
        results["nltk"] = nltk_peer(names, args.nltk_order)
    else:
        print(f"nltk peer skipped: {names} is not there (python -m bigramlab.train dataset=names "
              "downloads it)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    if args.markdown:
        replace_block(args.markdown, "scripts/benchmark_ngrams.py", markdown(results))


def _counting_table(floors: dict, rows: list[dict]) -> list[str]:
    lines = [
        "| k | 1 process | MB/s | 2 processes | MB/s each | 2 over 1 | contexts | counts of 1 "
        "and 2 processes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['k']} | {r['seconds']:.3f} s | {r['MB/s']:.1f} | {r['seconds_2']:.3f} s | "
        f"{r['MB/s_per_process_2']:.1f} | {r['speedup_2']:.2f}x | {r['contexts']:,} | "
        f"{'bitwise equal' if r['bitwise_equal'] else 'different'} |"
        for r in rows
    ]
    shown = ", ".join(f"{name} {rate:,.0f} MB/s" for name, rate in floors.items())
    return [*lines, "", f"Floors, one thread: {shown}."]


def markdown(results: dict) -> str:
    """The block of docs/benchmark.md: every table of this run, headed by its command."""
    lines = [provenance(), ""]
    lines += ["Counting the `words` list written out as text (MB/s of its UTF-8 bytes):", ""]
    lines += _counting_table(results["floors"], results["counting"])
    if "corpus" in results:
        corpus = results["corpus"]
        lines += ["", f"Counting `{Path(corpus['path']).name}`:", ""]
        lines += _counting_table(corpus["floors"], corpus["counting"])
    if "big" in results:
        big = results["big"]
        lines += [
            "",
            f"Counting a {big['megabytes']:,.0f} MB file at k = {big['k']} in a process of its "
            f"own: {big['seconds']:.1f} s ({big['megabytes'] / big['seconds']:.1f} MB/s), "
            f"{big['contexts']:,} contexts, peak RSS {big['peak_rss_mib']:,.0f} MiB.",
        ]
    lines += ["", "Kneser–Ney on `words` (fit, and every context's distribution):", ""]
    lines += [f"- k = {r['k']}: {r['seconds']:.2f} s, {r['contexts']:,} contexts"
              for r in results["kneser_ney"]]  # fmt: skip
    runs = results.get("training", []) + results.get("experiments", [])
    if runs:
        lines += [
            "",
            "Whole runs, each in a process of its own (wall time, peak RSS, the run's NLLs):",
            "",
            "| command | threads | wall | peak RSS | dev | test |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| `{r['command']}` | {r.get('threads')} | {r['seconds']:.1f} s | "
            f"{r['peak_rss_gb']:.2f} GB | {r['val_nll']:.6f} | {r['test_nll']:.6f} |"
            for r in runs
        ]
    if "nltk" in results:
        nltk = results["nltk"]
        lines += [
            "",
            f"nltk.lm against bigramlab on names.txt's lecture split, n-grams of order "
            f"{nltk['order']} (k = {nltk['order'] - 1}), fitted on train, scored on dev:",
            "",
        ]
        lines += ["| model | nltk.lm fit + score | bigramlab count, fit + score | dev NLL "
                  "(nltk / bigramlab) |", "|---|---|---|---|"]  # fmt: skip
        for name in ("lidstone", "kneser_ney"):
            if f"nltk_{name}" not in nltk:
                continue
            theirs, ours = nltk[f"nltk_{name}"], nltk[f"bigramlab_{name}"]
            lines.append(
                f"| {name} | {theirs['fit_s'] + theirs['score_s']:.2f} s | "
                f"{ours['fit_and_score_s']:.3f} s | {theirs['dev_nll']:.6f} / "
                f"{ours['dev_nll']:.6f} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
