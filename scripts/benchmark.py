"""Benchmark: the lecture's reference loop against the pipeline's three exact loss forms, the bare
counts-form floor, corpus counting throughput, and whole-process time and memory of a run.

    python scripts/benchmark.py [--device cpu|cuda] [--repeats 3] [--json F]
        [--markdown docs/benchmark.md]

Corpora: names.txt (from the data cache, data/names.txt, if there), the `words` list, and `words`
written out 10 and 100 times as text files. Every time is a median over --repeats repeats.
--markdown: the tables, with this command, the machine and the date, into the page's block of this
script (one block a device).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import ClassVar

import lightning as L
import torch
import torch.nn.functional as F

from bigramlab.counting.bigrams import count_corpus
from bigramlab.data.corpora import EnglishWords, TextFile
from bigramlab.data.vocab import Vocab, bigram_pairs
from bigramlab.models.losses import nll_sum_counts
from bigramlab.writers.markdown import provenance, replace_block

ROOT = Path(__file__).resolve().parents[1]
# The reference loop holds several (bigrams × 27) float matrices at once (one-hot, logits, counts,
# probs, and autograd copies): ~2.5 GB on `words`; ×10 would not fit in 24 GB. The same bound keeps
# the O(corpus) impls (index, onehot) to corpora that fit.
REF_MAX_BIGRAMS = 5_000_000


def median_time(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reference_step_time(xs: torch.Tensor, ys: torch.Tensor, V: int, steps: int, device: str,
                        sync: Callable[[], None]) -> float:  # fmt: skip
    """The lecture's loop, literally: seconds per step (median over `steps` steps)."""
    xs, ys = xs.to(device), ys.to(device)
    num = xs.nelement()
    g = torch.Generator().manual_seed(2147483647)
    W = torch.randn((V, V), generator=g).to(device).requires_grad_(True)

    def step() -> None:
        xenc = F.one_hot(xs, num_classes=V).float()
        logits = xenc @ W
        counts = logits.exp()
        probs = counts / counts.sum(1, keepdims=True)
        loss = -probs[torch.arange(num, device=device), ys].log().mean() + 0.01 * (W**2).mean()
        W.grad = None
        loss.backward()
        W.data += -50 * W.grad

    return median_time(step, steps, sync)


def bare_counts_step_time(N: torch.Tensor, steps: int, device: str, sync) -> float:
    """The practical floor: the counts form in a bare PyTorch loop, seconds per step."""
    N = N.to(device).float()
    g = torch.Generator().manual_seed(2147483647)
    W = torch.randn(N.shape, generator=g).to(device).requires_grad_(True)

    def step() -> None:
        loss = nll_sum_counts(W, N) / N.sum() + 0.01 * (W**2).mean()
        W.grad = None
        loss.backward()
        W.data += -50 * W.grad

    return median_time(step, steps, sync)


class ValidationClock(L.Callback):
    """The wall clock at the end of every validation: (global step, seconds)."""

    ends: ClassVar[list[tuple[int, float]]] = []

    def on_validation_end(self, trainer: L.Trainer, *args: object) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        ValidationClock.ends.append((trainer.global_step, time.perf_counter()))


class StepTimer(L.Callback):
    """Wall time of every training step; added to a run as a config override, read back after."""

    times: ClassVar[list[float]] = []

    def _sync(self) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def on_train_batch_start(self, *args: object) -> None:
        self._sync()
        self.start = time.perf_counter()

    def on_train_batch_end(self, *args: object) -> None:
        self._sync()
        StepTimer.times.append(time.perf_counter() - self.start)


class JobClock(StepTimer):
    """For a sweep's jobs, run in another process: appends one JSON line a job to the file named
    by $BIGRAMLAB_JOB_CLOCK, with the job's end (after its last checkpoint) and the summed wall
    time of its training steps (StepTimer's)."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        StepTimer.times = []

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        with open(os.environ["BIGRAMLAB_JOB_CLOCK"], "a") as f:
            f.write(json.dumps({"end": time.time(), "steps_s": sum(StepTimer.times)}) + "\n")


def sweep_job_times(corpus_args: list[str], n_jobs: int, workdir: Path) -> list[dict[str, float]]:
    """A basic-launcher grid of `n_jobs` default 1000-step jobs (lr 10, 20, ...) in a fresh
    process; for each job after the first: its wall time (from the previous job's end to its own:
    Hydra's job set-up, data, model, Trainer, fit, metrics.json), its training steps, and the
    difference, the per-job overhead."""
    clock = workdir / f"jobs-{time.monotonic_ns()}.jsonl"
    lrs = ",".join(str(10 * (i + 1)) for i in range(n_jobs))
    env = {
        **os.environ,
        "BIGRAMLAB_JOB_CLOCK": str(clock),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "scripts"), os.environ.get("PYTHONPATH", "")]),
    }
    subprocess.run(
        [sys.executable, "-m", "bigramlab.train", "-m", *corpus_args, f"optim.lr={lrs}",
         f"paths.log_dir={workdir / 'logs'}", f"paths.data_dir={ROOT / 'data'}",
         "callbacks.progress_bar.refresh_rate=0",
         "+callbacks.job_clock._target_=benchmark.JobClock"],
        cwd=workdir, check=True, capture_output=True, env=env,
    )  # fmt: skip
    jobs = [json.loads(line) for line in clock.read_text().splitlines()]
    return [
        {"job_s": job["end"] - previous["end"], "steps_s": job["steps_s"],
         "overhead_s": job["end"] - previous["end"] - job["steps_s"]}
        for previous, job in zip(jobs, jobs[1:])
    ]  # fmt: skip


def pipeline_step_time(corpus_args: list[str], loss_form: str, steps: int, device: str,
                       workdir: Path) -> tuple[float, float | None]:  # fmt: skip
    """(median step time, amortized step time) of the Lightning pipeline (default callbacks and
    logging) for one loss_form.

    The median is of the training steps alone; the amortized step is the wall time from the
    second validation to the second-to-last one over the steps between them: training and the
    periodic validations (with their report) together.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from bigramlab.train import train

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            *corpus_args, f"model.loss_form={loss_form}", f"trainer.max_steps={steps}",
            f"trainer.accelerator={'gpu' if device == 'cuda' else 'cpu'}",
            "callbacks.progress_bar.refresh_rate=0", f"paths.data_dir={ROOT / 'data'}",
            f"paths.root_dir={workdir}", f"+callbacks.step_timer._target_={__name__}.StepTimer",
            f"+callbacks.validation_clock._target_={__name__}.ValidationClock",
        ])  # fmt: skip
    HydraConfig().set_config(cfg)
    OmegaConf.set_readonly(cfg, False)
    cfg.paths.output_dir = str(workdir / f"run-{loss_form}-{time.monotonic_ns()}")
    StepTimer.times = []
    ValidationClock.ends = []
    train(cfg)
    median = statistics.median(StepTimer.times[1:])  # the first step includes one-off work
    ends = ValidationClock.ends
    if len(ends) < 4:
        return median, None
    (first_step, first), (last_step, last) = ends[1], ends[-2]
    return median, (last - first) / (last_step - first_step)


# Measures one command from a small, fresh interpreter: a child forked from this (large) process
# would count this process's pages in its peak RSS.
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(proc.pid, 0)
print(time.perf_counter() - start, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status))
"""


def wall_and_peak(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """Wall time (s) and peak RSS (MiB) of one whole process."""
    out = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], cwd=cwd, check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    assert out[2] == "0", f"{cmd} failed"
    return float(out[0]), float(out[1])


BARE_SCRIPT = """
import sys, torch
from torch.utils.tensorboard import SummaryWriter
from bigramlab.data.corpora import EnglishWords
from bigramlab.counting.bigrams import count_corpus
from bigramlab.models.losses import nll_sum_counts
from bigramlab.writers.markdown import provenance, replace_block
vocab, _, counts = count_corpus(EnglishWords(), [0.8, 0.1, 0.1], 42)
device = sys.argv[2]
N = counts["train"].float().to(device)
g = torch.Generator().manual_seed(2147483647)
W = torch.randn(N.shape, generator=g).to(device).requires_grad_(True)
writer = SummaryWriter(sys.argv[1])
for step in range(1000):
    nll = nll_sum_counts(W, N) / N.sum()
    reg = 0.01 * (W**2).mean()
    loss = nll + reg
    writer.add_scalar("loss/total", loss.item(), step)
    writer.add_scalar("loss/nll", nll.item(), step)
    writer.add_scalar("loss/reg", reg.item(), step)
    W.grad = None
    loss.backward()
    W.data += -50 * W.grad
writer.close()
"""


# The frameworks' own floor: the bare script's counting and steps, as a LightningModule fitted by
# a Lightning Trainer from a config composed by Hydra, validating every 50 steps as the default run
# does; and nothing of bigramlab's logging, checkpoints, report or figures.
FLOOR_SCRIPT = """
import sys, torch, lightning as L
from hydra import compose, initialize_config_dir
from bigramlab.plumbing.config import CONFIG_DIR
from bigramlab.data.corpora import EnglishWords
from bigramlab.counting.bigrams import count_corpus
from bigramlab.models.losses import nll_sum_counts
from bigramlab.writers.markdown import provenance, replace_block
with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
    cfg = compose("train", return_hydra_config=True)
vocab, _, counts = count_corpus(EnglishWords(), [0.8, 0.1, 0.1], 42)
N = counts["train"].float()
class Batches(torch.utils.data.IterableDataset):
    def __init__(self, batch, n=None):
        self.batch, self.n = batch, n
    def __iter__(self):
        i = 0
        while self.n is None or i < self.n:
            i += 1
            yield self.batch
class Floor(L.LightningModule):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(2147483647)
        self.W = torch.nn.Parameter(torch.randn(N.shape, generator=g))
    def training_step(self, batch, i):
        return nll_sum_counts(self.W, batch) / batch.sum() + 0.01 * (self.W**2).mean()
    def validation_step(self, batch, i):
        return {s: nll_sum_counts(self.W, c.float()) / c.sum() for s, c in batch.items()}
    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=50)
    def train_dataloader(self):
        return torch.utils.data.DataLoader(Batches(N), batch_size=None)
    def val_dataloader(self):
        return torch.utils.data.DataLoader(Batches(counts, 1), batch_size=None)
trainer = L.Trainer(max_steps=1000, val_check_interval=50, check_val_every_n_epoch=None,
                    logger=False, enable_checkpointing=False, enable_progress_bar=False,
                    enable_model_summary=False, num_sanity_val_steps=1, accelerator=sys.argv[1])
trainer.fit(Floor())
"""


# What each command imports, against what it cannot do without.
IMPORTS = {
    "torch + hydra": "import torch, hydra",
    "bigramlab.sample": "import bigramlab.sample",
    "bigramlab.evaluate": "import bigramlab.evaluate",
    "bare script (torch, TensorBoard, counting)": (
        "import torch; from torch.utils.tensorboard import SummaryWriter; "
        "import bigramlab.data.corpora, bigramlab.counting.bigrams, bigramlab.models.losses"
    ),
    "bigramlab.train": "import bigramlab.train",
    "the floor script's: Lightning, Hydra, counting": (
        "import torch, lightning, hydra; "
        "import bigramlab.plumbing.config, bigramlab.data.corpora, bigramlab.counting.bigrams, "
        "bigramlab.models.losses"
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    parser.add_argument("--skip-process", action="store_true", help="skip whole-process runs")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch sees no CUDA GPU: run with --device cpu")
    torch.set_num_threads(torch.get_num_threads())
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    results: dict[str, object] = {
        "date": date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"lightning {L.__version__}",
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "corpora": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        words_text = ("\n".join(EnglishWords().load()) + "\n").encode()
        corpora: dict[str, list[str]] = {}
        if (ROOT / "data" / "names.txt").is_file():
            corpora["names"] = ["dataset=names"]
        for times in (1, 10, 100):
            path = tmp / f"words_x{times}.txt"
            path.write_bytes(words_text * times)
            corpora["words" if times == 1 else f"words_x{times}"] = [
                "dataset=text_file", f"dataset.path={path}"]  # fmt: skip
        for name, corpus_args in corpora.items():
            path = ROOT / "data" / "names.txt" if name == "names" else Path(corpus_args[1][13:])
            start = time.perf_counter()
            # The default split: the second pass moves the val and test words' pairs to their split.
            vocab, _, counts = count_corpus(TextFile(str(path)), [0.8, 0.1, 0.1], 0)
            count_seconds = time.perf_counter() - start
            N = sum(counts.values())  # all bigrams, as the reference loop sees them
            n_bigrams = int(N.sum())
            row: dict[str, object] = {
                "bigrams": n_bigrams, "MiB": path.stat().st_size / 2**20,
                "count_MiB_per_s": path.stat().st_size / 2**20 / count_seconds,
            }  # fmt: skip
            if n_bigrams <= REF_MAX_BIGRAMS:
                words = TextFile(str(path)).load()
                xs, ys = bigram_pairs(words, Vocab.from_words(words))
                ref_steps = 10 if n_bigrams < 1e6 else 3
                row["reference_s"] = reference_step_time(xs, ys, len(vocab), ref_steps,
                                                         args.device, sync)  # fmt: skip
                del xs, ys, words
            row["bare_counts_s"] = bare_counts_step_time(N, 200, args.device, sync)
            for loss_form, steps in (("counts", 300), ("index", 20), ("onehot", 5)):
                if loss_form != "counts" and n_bigrams > REF_MAX_BIGRAMS:
                    continue  # O(corpus) a step, and O(corpus) memory for the pairs
                if loss_form == "onehot" and n_bigrams > 3_000_000 and args.device == "cpu":
                    steps = 3
                row[f"pipeline_{loss_form}_s"], _ = pipeline_step_time(
                    corpus_args, loss_form, steps, args.device, tmp
                )
            if name == "words":
                # A default run's 1000 steps, validating every 50: the amortized step.
                _, row["pipeline_amortized_s"] = pipeline_step_time(
                    corpus_args, "counts", 1000, args.device, tmp
                )
            if name == "names" and not args.skip_process:
                row["sweep_jobs"] = sweep_job_times(corpus_args, 6, tmp)
            results["corpora"][name] = row
            print(name, json.dumps(row), flush=True)
        if not args.skip_process:
            imports: dict[str, list[float]] = {key: [] for key in IMPORTS}
            for _ in range(args.repeats):
                for key, code in IMPORTS.items():
                    imports[key].append(wall_and_peak([sys.executable, "-c", code], tmp)[0])
            results["imports_s"] = {key: statistics.median(v) for key, v in imports.items()}
            results["import_runs_s"] = imports
            print("imports", json.dumps(results["imports_s"]), flush=True)
            train_cmd = [
                sys.executable,
                "-m",
                "bigramlab.train",
                f"hydra.run.dir={tmp}/proc",
                f"trainer.accelerator={'gpu' if args.device == 'cuda' else 'cpu'}",
            ]
            bare_cmd = [sys.executable, "-c", BARE_SCRIPT, str(tmp / "bare"), args.device]
            floor_cmd = [sys.executable, "-c", FLOOR_SCRIPT,
                         "gpu" if args.device == "cuda" else "cpu"]  # fmt: skip
            every_250 = [*train_cmd, "callbacks.report.figures_every_n_steps=250"]
            # Back to back, repeat by repeat, so that a slow spell of the machine hits all three.
            runs: dict[str, list[tuple[float, float]]] = {
                "train_default": [], "train_heatmaps_every_250_steps": [], "bare_script": [],
                "framework_floor": [],
            }  # fmt: skip
            for repeat in range(args.repeats):
                for key, cmd in zip(runs, (train_cmd, every_250, bare_cmd, floor_cmd)):
                    # A run directory of its own each time: one that holds a run is refused.
                    own = f"hydra.run.dir={tmp}/proc_{key}_{repeat}"
                    cmd = [own if a.startswith("hydra.run.dir=") else a for a in cmd]
                    runs[key].append(wall_and_peak(cmd, tmp))
            results["process"] = {
                key: (statistics.median(w for w, _ in v), statistics.median(p for _, p in v))
                for key, v in runs.items()
            }
            results["process_runs_s"] = {key: [w for w, _ in v] for key, v in runs.items()}
            print("process", json.dumps(results["process"]), flush=True)
    report(results, args.json, args.markdown)


def report(results: dict, json_path: Path | None, markdown_path: Path | None) -> None:
    lines = [
        provenance(), "",
        f"Device: {results['device']}.", "",
        "Per-step time (median), full batch, reg 0.01, lr 50:", "",
        "| corpus | bigrams | reference loop | pipeline onehot | pipeline index | pipeline counts "
        "(default) | bare counts loop | reference / pipeline | counting |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip

    amortized: dict[str, tuple[float, float | None]] = {}

    def ms(x: object) -> str:
        return "not run" if x is None else f"{1000 * x:.3g} ms"

    for name, r in results["corpora"].items():
        ratio = (r["reference_s"] / r["pipeline_counts_s"]) if "reference_s" in r else None
        if r.get("pipeline_amortized_s"):
            amortized[name] = (r["pipeline_amortized_s"], r.get("reference_s"))
        lines.append(
            f"| {name} | {r['bigrams']:,} | {ms(r.get('reference_s'))} | "
            f"{ms(r.get('pipeline_onehot_s'))} | {ms(r.get('pipeline_index_s'))} | "
            f"{ms(r.get('pipeline_counts_s'))} | {ms(r.get('bare_counts_s'))} | "
            f"{'—' if ratio is None else f'{ratio:,.0f}×'} | {r['count_MiB_per_s']:.0f} MiB/s |"
        )
    corpora = results["corpora"]
    if "words" in corpora and "words_x100" in corpora:
        flat = corpora["words_x100"]["pipeline_counts_s"] / corpora["words"]["pipeline_counts_s"]
        lines += ["", f"Full-batch counts step, words ×100 over words ×1: {flat:.2f}×."]
    for name, (step, reference) in amortized.items():
        times = f", {reference / step:,.0f}× faster than the reference loop" if reference else ""
        lines += ["", f"Amortized step on {name} (training and validation every 50 steps, from "
                  f"the second validation to the second-to-last): {ms(step)}{times}."]  # fmt: skip
    for name, r in results["corpora"].items():
        if jobs := r.get("sweep_jobs"):
            median = {key: statistics.median(j[key] for j in jobs) for key in jobs[0]}
            lines += ["", f"Sweep on {name}, basic launcher, default 1000-step jobs, jobs 2 to "
                      f"{len(jobs) + 1} (median): {median['job_s']:.2f} s a job, of which training "
                      f"steps {median['steps_s']:.2f} s; beyond the steps "
                      f"{median['overhead_s']:.2f} s (jobs: "
                      + ", ".join(f"{j['overhead_s']:.2f}" for j in jobs) + ")."]  # fmt: skip
    if "imports_s" in results:
        lines += ["", "Imports, a fresh process each (median):", ""]
        for key, seconds in results["imports_s"].items():
            runs = ", ".join(f"{w:.2f}" for w in results["import_runs_s"][key])
            lines.append(f"- `{key}`: {seconds:.2f} s (runs: {runs})")
    if "process" in results:
        lines += ["", "Whole process, 1000 steps on `words` (median wall time, peak RSS):", ""]
        for key, (wall, peak) in results["process"].items():
            runs = ", ".join(f"{w:.2f}" for w in results["process_runs_s"][key])
            lines.append(f"- {key}: {wall:.2f} s (runs: {runs}), {peak:.0f} MiB")
        default, bare = results["process"]["train_default"][0], results["process"]["bare_script"][0]
        lines.append(f"- default run / bare script: {default / bare:.2f}×")
        if "imports_s" in results:
            imports = results["imports_s"]
            extra_imports = (
                imports["bigramlab.train"] - imports["bare script (torch, TensorBoard, counting)"]
            )
            lines.append(
                f"- default run − bare script: {default - bare:.2f} s, of which the imports "
                f"{extra_imports:.2f} s; beyond them: {default - bare - extra_imports:.2f} s"
            )
            floor = results["process"]["framework_floor"][0]
            floor_imports = (
                imports["the floor script's: Lightning, Hydra, counting"]
                - imports["bare script (torch, TensorBoard, counting)"]
            )
            lines.append(
                f"- framework floor − bare script: {floor - bare:.2f} s, of which the imports "
                f"{floor_imports:.2f} s; beyond them: {floor - bare - floor_imports:.2f} s"
            )
    text = "\n".join(lines) + "\n"
    print(text)
    if json_path:
        json_path.write_text(json.dumps(results, indent=2) + "\n")
    if markdown_path:
        device = "cpu" if results["device"] == "cpu" else "cuda"
        replace_block(markdown_path, f"scripts/benchmark.py --device {device}", text)


if __name__ == "__main__":
    main()
