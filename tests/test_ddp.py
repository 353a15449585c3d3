"""Data-parallel training gives the model of one process: same W, same metrics, one run directory.

`trainer=ddp_cpu` runs 2 CPU processes (gloo) forked from the test's own; `trainer=ddp` (Lightning's
`ddp`, which starts each rank as a new command) is run from the command line on CPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigramlab.data.corpora import TextFile
from bigramlab.errors import Diverged, UserError, from_worker_traceback
from bigramlab.train import train
from bigramlab.training.datamodule import NgramDataModule, PairMiniBatches, shard_counts
from tests.conftest import make_words
from tests.helpers import free_port, run_in_process, run_module, run_train

ATOL = 1e-5


def assert_same_run(one: tuple[dict, torch.Tensor], ddp: tuple[dict, torch.Tensor]) -> None:
    torch.testing.assert_close(ddp[1], one[1], rtol=0, atol=ATOL)
    for key in ("train_nll", "val_nll", "test_nll", "final_loss"):
        assert ddp[0][key] == pytest.approx(one[0][key], abs=ATOL)
    assert ddp[0]["steps"] == one[0]["steps"]


def test_count_shares_are_unequal_and_sum_to_the_counts(words_file: Path) -> None:
    dm = NgramDataModule(TextFile(str(words_file)))
    dm.setup()
    for split in ("train", "val"):
        counts = dm.counts[split]  # sparse, as counted
        assert counts.is_sparse
        shares = [shard_counts(counts, rank, 2) for rank in range(2)]
        assert torch.equal((shares[0] + shares[1]).to_dense(), counts.to_dense())
        assert int(shares[0].sum()) != int(shares[1].sum())
        assert all(int(share.sum()) > 0 for share in shares)


def test_pair_shares_of_a_batch_are_the_batch() -> None:
    xs, ys = torch.arange(100), torch.arange(100, 200)
    index = [5, 3, 99, 0, 42, 7, 8]  # odd: the processes' parts differ in size
    parts = [PairMiniBatches(xs, ys, rank, 2)[index] for rank in range(2)]
    assert [len(p.xs) for p in parts] == [4, 3]
    assert torch.cat([p.xs for p in parts]).tolist() == index
    assert torch.cat([p.ys for p in parts]).tolist() == [i + 100 for i in index]
    assert all(p.batch_events == len(index) for p in parts)


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param([], id="full-batch-counts"),
        # 2400-odd pairs in batches of 37: shares of 19 and 18, and a short last batch each epoch.
        pytest.param(["data.batch_size=37", "trainer.max_steps=80"], id="mini-batch-counts"),
        pytest.param(["data.batch_size=37", "model.loss_form=index"], id="mini-batch-index"),
        pytest.param(["model.loss_form=onehot"], id="full-batch-onehot"),
    ],
)
def test_ddp_cpu_gives_the_single_process_model(train_config, tmp_path: Path, overrides) -> None:
    ddp_cfg = train_config("trainer=ddp_cpu", *overrides)
    assert (ddp_cfg.trainer.strategy, ddp_cfg.trainer.devices) == ("ddp_fork", 2)
    one = run_train(train_config, tmp_path / "one", *overrides)
    ddp = run_train(train_config, tmp_path / "ddp", "trainer=ddp_cpu", *overrides)
    assert_same_run(one, ddp)
    # One TensorBoard run whose curves are the single process's: rank 0 alone writes them.
    assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    assert not list(tmp_path.glob("**/version_*"))
    curves = []
    for run in ("one", "ddp"):
        acc = EventAccumulator(str(tmp_path / run / "tensorboard"))
        acc.Reload()
        curves.append(
            {
                tag: [(e.step, e.value) for e in acc.Scalars(tag)]
                for tag in ("loss/total", "nll/val", "compare/kl_train")
            }
        )
    for tag, points in curves[0].items():
        assert [s for s, _ in curves[1][tag]] == [s for s, _ in points], tag
        for (_, a), (_, b) in zip(points, curves[1][tag]):
            assert b == pytest.approx(a, abs=ATOL), tag


def test_ddp_cpu_divergence_is_reported_with_its_step(train_config, tmp_path: Path) -> None:
    cfg = train_config("trainer=ddp_cpu", "optim.lr=1e9")
    with pytest.raises(Diverged, match=r"training diverged at step \d+") as raised:
        train(cfg)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["steps"] == raised.value.step
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    # Rank 0's event file alone: the main process, which never trained, opened no writer.
    assert len(list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_worker_errors_are_rebuilt_from_their_traceback() -> None:
    text = (
        "\n\n-- Process 0 terminated with the following error:\nTraceback (most recent call "
        'last):\n  File "x.py", line 1, in f\nbigramlab.errors.Diverged: training diverged at '
        "step 12: the loss is nan with optim.lr=1e+09, model.reg=0.01; lower optim.lr\n"
    )
    error = from_worker_traceback(text)
    assert isinstance(error, Diverged) and error.step == 12
    assert str(error).startswith("training diverged at step 12: the loss is nan")
    assert type(from_worker_traceback("...\nbigramlab.errors.UserError: bad")) is UserError
    assert from_worker_traceback("...\nValueError: something else") is None


def test_ddp_inside_a_multirun_is_refused_with_the_fix(train_config) -> None:
    cfg = train_config("trainer=ddp", "trainer.accelerator=cpu")
    OmegaConf.set_readonly(cfg.hydra, False)
    cfg.hydra.mode = RunMode.MULTIRUN
    HydraConfig().set_config(cfg)
    with pytest.raises(UserError, match="trainer.strategy=ddp_spawn"):
        train(cfg)


QUICK = [
    "trainer.max_steps=30",
    "trainer.val_check_interval=10",
    "callbacks.progress_bar.refresh_rate=0",
]


@pytest.mark.slow
def test_lightning_ddp_from_the_command_line_gives_the_single_process_model(tmp_path: Path):
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(500, seed=3)) + "\n")
    data = ["dataset=text_file", f"dataset.path={words}", "data.batch_size=51", *QUICK]
    runs = {}
    for name, trainer in (
        ("one", []),
        ("ddp", ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]),
    ):
        # The one-process run in this process; DDP's processes as a user starts them.
        run = run_module if trainer else run_in_process
        result = run("bigramlab.train", *data, *trainer, f"hydra.run.dir={name}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.count("run directory:") == 1  # printed by rank 0 only
        runs[name] = (
            json.loads((tmp_path / name / "metrics.json").read_text()),
            torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)[
                "state_dict"
            ]["net.W"],
        )
    assert_same_run(runs["one"], runs["ddp"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp", "one", "words.txt"]
    assert len(list((tmp_path / "ddp" / "tensorboard").glob("events.out.tfevents.*"))) == 1


@pytest.mark.slow
def test_ddp_cpu_with_lbfgs_reaches_the_single_process_objective(tmp_path: Path) -> None:
    """L-BFGS evaluates the loss as many times a step as its line search decides from the loss's
    value, and every evaluation all-reduces the gradient: each process must see the whole batch's
    value, or they run different numbers of all-reduces (each seeing its own part, this hung at
    k = 1 and aborted at k = 3). Its path follows the last bits of the gradient, which DDP's
    average sums in another order than one process: the objective it reaches is one process's,
    W only as far as the objective pins it (README, CPU, GPU and several processes)."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(800, seed=6)) + "\n")
    data = ["dataset=text_file", f"dataset.path={words}", "model.context=3"]
    data += ["model.features=interpolated", "optim=lbfgs", "trainer.max_steps=15"]
    runs = {}
    for name, trainer in (("one", []), ("ddp", ["trainer=ddp_cpu"])):
        run = run_module if trainer else run_in_process  # DDP's processes as a user starts them
        result = run("bigramlab.train", *data, *trainer, f"hydra.run.dir={name}", cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert runs["ddp"]["steps"] == runs["one"]["steps"] == 15
    assert runs["ddp"]["final_loss"] == pytest.approx(runs["one"]["final_loss"], abs=ATOL)


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp_fork", "ddp_spawn"])
def test_ddp_cpu_inside_a_two_job_multirun(tmp_path: Path, strategy: str) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(500, seed=4)) + "\n")
    data = ["dataset=text_file", f"dataset.path={words}", *QUICK]
    ddp = ["trainer=ddp_cpu", f"trainer.strategy={strategy}"]
    sweep = run_module("bigramlab.train", "-m", *data, *ddp, "optim.lr=10,50", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    assert [j.name.split(",")[0] for j in jobs] == ["0_lr=10", "1_lr=50"]  # one per job, no more
    for job, lr in zip(jobs, (10, 50)):
        assert len(list(job.glob("**/metrics.json"))) == 1
        assert len(list(job.glob("**/events.out.tfevents.*"))) == 1
        ddp = json.loads((job / "metrics.json").read_text())
        single = run_in_process(
            "bigramlab.train", *data, f"optim.lr={lr}", f"hydra.run.dir=one_{lr}", cwd=tmp_path
        )
        assert single.returncode == 0, single.stderr[-3000:]
        one = json.loads((tmp_path / f"one_{lr}" / "metrics.json").read_text())
        assert ddp["status"] == "ok" and ddp["val_nll"] == pytest.approx(one["val_nll"], abs=ATOL)


@pytest.mark.slow
def test_two_nodes_on_loopback_give_the_single_process_model(tmp_path: Path) -> None:
    """Lightning's num_nodes=2 with one process a node, each node a command of its own that knows
    only its NODE_RANK and the master's address (as SLURM or torchrun would tell it): each counts
    its half of the corpus, and W, the counts' NLLs and every metric are one process's."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(800, seed=6)) + "\n")
    data = ["dataset=text_file", f"dataset.path={words}", "model.context=3", *QUICK]
    one = run_in_process("bigramlab.train", *data, "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    port = free_port()
    nodes = []
    for node in range(2):
        env = os.environ | {
            "NODE_RANK": str(node),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        args = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=1"]
        args += ["trainer.num_nodes=2", f"hydra.run.dir=node{node}"]
        nodes.append(
            subprocess.Popen(
                [sys.executable, "-m", "bigramlab.train", *data, *args],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    assert outputs[0][0].count("run directory:") == 1 and "run directory:" not in outputs[1][0]
    runs = {}
    for name in ("one", "node0"):
        state = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        runs[name] = json.loads((tmp_path / name / "metrics.json").read_text()), state
    assert torch.equal(
        runs["node0"][1]["state_dict"]["net.row_keys"], runs["one"][1]["state_dict"]["net.row_keys"]
    )
    assert_same_run(
        (runs["one"][0], runs["one"][1]["state_dict"]["net.W"]),
        (runs["node0"][0], runs["node0"][1]["state_dict"]["net.W"]),
    )
    for key, value in runs["one"][0].items():
        if isinstance(value, float):
            assert runs["node0"][0][key] == pytest.approx(value, abs=ATOL), key
    # Rank 0 (node 0) alone writes the results.
    assert not (tmp_path / "node1" / "metrics.json").exists()
    assert not (tmp_path / "node1" / "checkpoints").exists()
