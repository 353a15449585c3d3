"""Multiruns as a user starts them: the basic launcher, joblib, submitit_local and Optuna, each job
in its own directory with its metrics.json and its objective, and the sweep report over them. In
the test's process, but for the launchers that start processes and the sweeps killed or
interrupted, which run as a user starts them."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import assert_one_error_line, run_in_process, run_module

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
QUICK = [
    "trainer.max_steps=12",
    "trainer.val_check_interval=6",
    "callbacks.report.figures_every_n_steps=1000",
    "callbacks.progress_bar.refresh_rate=0",
]


def train_args(words_file: Path, *overrides: str) -> list[str]:
    """The arguments of a quick multirun on the words file (after `python -m bigramlab.train`)."""
    return train_command(words_file, *overrides)[3:]


def train_command(words_file: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bigramlab.train",
        "-m",
        "dataset=text_file",
        f"dataset.path={words_file}",
        *QUICK,
        *overrides,
    ]


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(p.parent.parent for p in sweep_dir.glob("*/.hydra/config.yaml"))


def sweep(tmp_path: Path, words_file: Path, *overrides: str) -> tuple[Path, list[Path]]:
    """Run `python -m bigramlab.train -m ...` in tmp_path; return the sweep dir and its job dirs
    (the only sweep directory under logs/, unless hydra.sweep.dir names one). In this process,
    but for a launcher that starts processes of its own (joblib, submitit), which runs as a user
    starts it."""
    own_process = any(o.startswith("hydra/launcher=") for o in overrides)
    run = run_module if own_process else run_in_process
    result = run("bigramlab.train", *train_args(words_file, *overrides), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    named = [o.partition("=")[2] for o in overrides if o.startswith("hydra.sweep.dir=")]
    if named:
        sweep_dir = tmp_path / named[0]
    else:
        (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    return sweep_dir, job_dirs(sweep_dir)


def objective(job_dir: Path) -> float:
    """The value the entry point returned to the sweeper, as its log records it."""
    found = re.findall(r"objective val_nll = (\S+)", (job_dir / "train.log").read_text())
    assert len(found) == 1
    return float(found[0])


def short_names(jobs: list[Path]) -> set[str]:
    """Job directory names without the overrides every job shares (QUICK)."""
    shared = {"figures_every_n_steps=1000", "steps=12", "val_check_interval=6"}
    return {",".join(p for p in j.name.split(",") if p not in shared) for j in jobs}


def lr_part(job_dir: Path) -> str:
    return re.search(r"\blr=[^,]+", job_dir.name).group(0)


def check_grid(sweep_dir: Path, jobs: list[Path], names: set[str]) -> None:
    assert short_names(jobs) == names
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["status"] == "ok" and metrics["steps"] == 12
        assert objective(job) == pytest.approx(metrics["val_nll"])
        assert (job / "checkpoints" / "last.ckpt").is_file()
        assert list((job / "tensorboard").glob("events.out.tfevents.*"))


def report(*sweep_dirs: Path, out: Path | None = None) -> list[dict[str, str]]:
    """Run `python -m bigramlab.report` over the sweeps; return the rows of its results.csv."""
    extra = ["--out", str(out)] if out else []
    result = run_in_process("bigramlab.report", *map(str, sweep_dirs), *extra, cwd=Path.cwd())
    assert result.returncode == 0, result.stderr
    assert "ranked by validation NLL" in result.stdout
    out = out or sweep_dirs[0]
    for name in ("report.md", "results.csv", "jobs.csv", "val_nll.png"):
        assert (out / name).is_file()
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


GRID = {
    f"{i}_figures_every_n_steps=1000,reg={reg},lr={lr}"
    for i, (lr, reg) in enumerate([(5, 0), (5, 0.1), (20, 0), (20, 0.1)])
}


def test_grid_with_the_basic_launcher_and_the_report(tmp_path: Path, words_file: Path) -> None:
    args = train_args(words_file, "optim.lr=5,20", "model.reg=0,0.1")
    result = run_in_process("bigramlab.train", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (tmp_path / "logs" / "train" / "multiruns").iterdir()
    # The multirun ends by naming its sweep directory, for the report.
    assert result.stdout.strip().splitlines()[-3:] == [
        f"sweep directory: {sweep_dir}",
        f"  python -m bigramlab.report {sweep_dir}",
        f"  tensorboard --logdir {sweep_dir}",
    ]
    jobs = job_dirs(sweep_dir)
    check_grid(sweep_dir, jobs, GRID)
    rows = report(sweep_dir)
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    vals = [float(r["val_nll"]) for r in rows]
    assert vals == sorted(vals)
    assert "| 1 |" in (sweep_dir / "report.md").read_text()


def test_repeats_are_grouped_with_mean_and_standard_deviation(
    tmp_path: Path, words_file: Path
) -> None:
    sweep_dir, jobs = sweep(tmp_path, words_file, "model.init_seed=1,2,3", "model.reg=0,0.1")
    assert len(jobs) == 6
    rows = report(sweep_dir)
    assert len(rows) == 2
    for row in rows:
        members = [j for j in jobs if j.name in row["jobs"].split()]
        assert len(members) == 3 and int(row["n"]) == 3
        assert {re.search(r"reg=[^,]+", j.name).group(0) for j in members} == {f"reg={row['reg']}"}
        for key in ("val_nll", "train_nll", "test_nll", "gap_val"):
            values = [json.loads((j / "metrics.json").read_text())[key] for j in members]
            assert float(row[key]) == pytest.approx(statistics.fmean(values), rel=1e-12)
            assert float(row[f"{key}_std"]) == pytest.approx(statistics.stdev(values), rel=1e-9)
        # The seeds give different models: the spread is real, not zero.
        assert float(row["val_nll_std"]) > 0
        assert row["repeats"] == "init_seed=1,2,3"
    assert [float(r["val_nll"]) for r in rows] == sorted(float(r["val_nll"]) for r in rows)
    assert "± " in (sweep_dir / "report.md").read_text()
    with open(sweep_dir / "jobs.csv") as f:
        assert len(list(csv.DictReader(f))) == 6
    # With no repeat keys, every job is a configuration of its own.
    result = run_in_process("bigramlab.report", str(sweep_dir), "--repeat-keys", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(sweep_dir / "results.csv") as f:
        assert [r["n"] for r in csv.DictReader(f)] == ["1"] * 6


def test_several_sweeps_are_ranked_in_one_table(tmp_path: Path, words_file: Path) -> None:
    first, _ = sweep(tmp_path, words_file, "optim.lr=5,20", "hydra.sweep.dir=sweeps/first")
    second, _ = sweep(tmp_path, words_file, "optim.lr=10", "hydra.sweep.dir=sweeps/second")
    rows = report(first, second, out=tmp_path / "both")
    assert sorted((r["sweep"], r["lr"]) for r in rows) == [
        ("first", "20"),
        ("first", "5"),
        ("second", "10"),
    ]
    vals = [float(r["val_nll"]) for r in rows]
    assert vals == sorted(vals)
    result = run_in_process("bigramlab.report", str(first), str(second), cwd=tmp_path)
    assert result.returncode == 2 and "--out" in result.stderr


# The launchers that start a process for each job (or worker): two jobs, each a process.
PAIR = {f"{i}_figures_every_n_steps=1000,reg=0.1,lr={lr}" for i, lr in enumerate([5, 20])}


def test_grid_with_joblib(tmp_path: Path, words_file: Path) -> None:
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    sweep_dir, jobs = sweep(tmp_path, words_file, *launcher, "optim.lr=5,20", "model.reg=0.1")
    check_grid(sweep_dir, jobs, PAIR)


def test_grid_with_submitit_local(tmp_path: Path, words_file: Path) -> None:
    sweep_dir, jobs = sweep(
        tmp_path, words_file, "hydra/launcher=submitit_local", "optim.lr=5,20", "model.reg=0.1"
    )
    check_grid(sweep_dir, jobs, PAIR)


def test_optuna_sweep_minimises_val_nll(tmp_path: Path, words_file: Path) -> None:
    sweep_dir, jobs = sweep(
        tmp_path, words_file, "hparams_search=optuna", "hydra.sweeper.n_trials=4"
    )
    assert len(jobs) == 4
    objectives = [objective(j) for j in jobs]
    best = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(objectives))
    for job in jobs:
        cfg = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
        assert 1 <= cfg["optim"]["lr"] <= 100 and 1e-4 <= cfg["model"]["reg"] <= 1
    assert len(report(sweep_dir)) == 4


def test_a_diverging_job_is_recorded_and_the_others_finish(tmp_path: Path, words_file: Path):
    sweep_dir, jobs = sweep(tmp_path, words_file, "optim.lr=10,1e9")
    by_lr = {lr_part(j): j for j in jobs}
    assert set(by_lr) == {"lr=10", "lr=1e+09"}
    good = json.loads((by_lr["lr=10"] / "metrics.json").read_text())
    bad = json.loads((by_lr["lr=1e+09"] / "metrics.json").read_text())
    assert good["status"] == "ok"
    assert bad["status"] == "diverged" and "lr=1e+09" in bad["reason"] and bad["val_nll"] is None
    assert objective(by_lr["lr=1e+09"]) == float("inf")
    assert not (by_lr["lr=1e+09"] / "checkpoints" / "last.ckpt").exists()
    rows = report(sweep_dir)
    assert [r["status"] for r in rows] == ["ok", "diverged"]


def test_a_job_with_bad_input_fails_alone(tmp_path: Path, words_file: Path) -> None:
    _, jobs = sweep(tmp_path, words_file, "optim.lr=-1,10")
    statuses = {lr_part(j): json.loads((j / "metrics.json").read_text())["status"] for j in jobs}
    assert statuses == {"lr=-1": "failed", "lr=10": "ok"}


KILLER = '''
import os
import signal
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig


class KillSweepAtJob(L.Callback):
    """Kills the sweep's process outright (no clean-up, like a lost machine) when job `num`
    starts training, the first time only."""

    def __init__(self, num: int, marker: str) -> None:
        self.num, self.marker = num, Path(marker)

    def on_train_start(self, trainer, pl_module) -> None:
        if HydraConfig.get().job.get("num") == self.num and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
'''


def trials(study_db: Path) -> list[tuple[int, str, tuple[float, ...]]]:
    """(number, state, parameter values) of every trial in the Optuna SQLite study."""
    with sqlite3.connect(study_db) as db:
        rows = db.execute("SELECT trial_id, number, state FROM trials ORDER BY number").fetchall()
        params = db.execute("SELECT trial_id, param_name, param_value FROM trial_params")
        by_trial: dict[int, dict[str, float]] = {}
        for trial_id, name, value in params.fetchall():
            by_trial.setdefault(trial_id, {})[name] = value
    return [(n, state, tuple(sorted(by_trial.get(i, {}).items()))) for i, n, state in rows]


def test_a_killed_optuna_sweep_resumes_and_leaves_its_best_trial_runnable(
    tmp_path: Path, words_file: Path
) -> None:
    (tmp_path / "killer.py").write_text(KILLER)
    command = train_command(
        words_file,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=4",
        "hydra.sweep.dir=study",
        "+callbacks.killer._target_=killer.KillSweepAtJob",
        "+callbacks.killer.num=2",
        f"+callbacks.killer.marker={tmp_path / 'killed'}",
    )
    killed = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert killed.returncode == -9, killed.stderr[-3000:]
    study = tmp_path / "study"
    finished = {
        j.name: (j / "metrics.json").stat().st_mtime_ns
        for j in job_dirs(study)
        if (j / "metrics.json").is_file()
    }
    assert len(finished) == 2
    assert [(n, s) for n, s, _ in trials(study / "optuna.db")] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "RUNNING"),
    ]

    # Killed as a process; resumed in this one.
    resumed = run_in_process("bigramlab.train", *command[3:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    after = trials(study / "optuna.db")
    # Trial 2 was killed: failed, and replaced by two new trials; 0 and 1 were not run again.
    assert [(n, s) for n, s, _ in after] == [
        (0, "COMPLETE"),
        (1, "COMPLETE"),
        (2, "FAIL"),
        (3, "COMPLETE"),
        (4, "COMPLETE"),
    ]
    complete = [params for _, state, params in after if state == "COMPLETE"]
    assert len(set(complete)) == 4
    done = [j for j in job_dirs(study) if (j / "metrics.json").is_file()]
    assert [j.name.split("_")[0] for j in done] == ["0", "1", "3", "4"]
    for name, mtime in finished.items():
        assert (study / name / "metrics.json").stat().st_mtime_ns == mtime
        assert len(re.findall("objective val_nll", (study / name / "train.log").read_text())) == 1

    best = yaml.safe_load((study / "optimization_results.yaml").read_text())
    assert best["best_value"] == pytest.approx(min(objective(j) for j in done))
    # Run once more after the end: nothing left to run.
    again = run_in_process("bigramlab.train", *command[3:], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert len(trials(study / "optuna.db")) == 5 and len(job_dirs(study)) == 5
    assert "4 finished trials, hydra.sweeper.n_trials=4: nothing to run" in again.stdout
    assert "\x1b[" not in again.stdout + again.stderr  # no colour codes in a log
    # Resumed with a setting that changes what a trial means: refused, the study untouched.
    changed = run_in_process(
        "bigramlab.train",
        *command[3:],
        "trainer.max_steps=30",
        "hydra.sweeper.n_trials=6",
        cwd=tmp_path,
    )
    line = assert_one_error_line(changed, "was run with other settings")
    assert line.startswith("error: the Optuna study in study was run with other settings")
    assert "was trainer.max_steps=12, is trainer.max_steps=30" in line
    assert len(trials(study / "optuna.db")) == 5 and len(job_dirs(study)) == 5

    experiment = study / "experiment" / "best_trial.yaml"
    assert "experiment=best_trial" in experiment.read_text()
    best_trial = ["--config-dir", "study", "experiment=best_trial", "hydra.run.dir=best"]
    rerun = run_in_process("bigramlab.train", *best_trial, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    metrics = json.loads((tmp_path / "best" / "metrics.json").read_text())
    assert metrics["val_nll"] == pytest.approx(best["best_value"], rel=1e-9)


@pytest.mark.parametrize("other", ["grid", "run"])
def test_an_optuna_sweep_into_a_directory_without_a_study_is_refused(
    tmp_path: Path, words_file: Path, other: str
) -> None:
    if other == "grid":
        sweep(tmp_path, words_file, "optim.lr=5,20", "hydra.sweep.dir=taken")
    else:
        single = ["dataset=text_file", f"dataset.path={words_file}", *QUICK, "hydra.run.dir=taken"]
        assert run_in_process("bigramlab.train", *single, cwd=tmp_path).returncode == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "taken").rglob("*"))
    result = run_in_process(
        "bigramlab.train",
        *train_args(words_file, "hparams_search=optuna", "hydra.sweep.dir=taken"),
        cwd=tmp_path,
    )
    line = assert_one_error_line(result, "not an Optuna study")
    what = "the jobs of another multirun (a grid sweep)" if other == "grid" else "a single run"
    assert line.startswith(f"error: hydra.sweep.dir=taken holds {what}, not an Optuna study")
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "taken").rglob("*")) == before


def test_a_slurm_launcher_without_slurm_is_refused(tmp_path: Path, words_file: Path) -> None:
    result = run_in_process(
        "bigramlab.train",
        *train_args(words_file, "hydra/launcher=slurm", "optim.lr=5,20"),
        cwd=tmp_path,
    )
    assert_one_error_line(
        result,
        "error: hydra/launcher=slurm submits the jobs to SLURM, and this machine has no srun: "
        "run the command where SLURM is (a cluster's login node), or use "
        "hydra/launcher=submitit_local or hydra/launcher=joblib here",
    )
    assert [p.name for p in tmp_path.iterdir()] == ["words.txt"]


def test_the_report_shows_the_settings_a_sweep_varies(tmp_path: Path, words_file: Path) -> None:
    sweep_dir, _ = sweep(
        tmp_path,
        words_file,
        "optim=lbfgs",
        "model.context=1,2",
        "model.features=onehot,interpolated",
    )
    result = run_in_process("bigramlab.report", str(sweep_dir), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = next(line for line in result.stdout.splitlines() if "val_nll" in line)
    columns = [c.strip() for c in header.strip("┃ ").split("┃")]
    assert columns[:5] == ["#", "jobs", "status", "context", "features"]
    assert "lr" not in columns and "reg" not in columns  # shared by every job
    table = (sweep_dir / "report.md").read_text().splitlines()
    assert table[4].startswith("| # | jobs | status | context | features | train_nll")
    rows = [line.split(" | ") for line in table[6:10]]
    assert sorted((r[3], r[4]) for r in rows) == [
        ("1", "interpolated"),
        ("1", "onehot"),
        ("2", "interpolated"),
        ("2", "onehot"),
    ]


@pytest.mark.parametrize("case", ["missing", "empty", "no jobs", "file"])
def test_the_report_of_no_sweep_is_one_error_line(tmp_path: Path, case: str) -> None:
    target = tmp_path / "target"
    if case == "empty":
        target.mkdir()
    elif case == "no jobs":
        (target / "notes").mkdir(parents=True)
    elif case == "file":
        target.write_text("x")
    line = assert_one_error_line(run_in_process("bigramlab.report", str(target), cwd=tmp_path), "")
    expected = {
        "missing": f"error: sweep directory {target} is missing",
        "empty": f"error: {target} is empty",
        "no jobs": f"error: {target} has no job directories",
        "file": f"error: {target} is not a directory",
    }
    assert line.startswith(expected[case])
    assert not (tmp_path / "target" / "report.md").exists()


INTERRUPTER = '''
import os
import signal
from pathlib import Path

import lightning as L
from hydra.core.hydra_config import HydraConfig


class CtrlCAtJob(L.Callback):
    """Presses Ctrl-C (SIGINT to its own process) when job `num` starts training, the first time
    only."""

    def __init__(self, num: int, marker: str) -> None:
        self.num, self.marker = num, Path(marker)

    def on_train_start(self, trainer, pl_module) -> None:
        if HydraConfig.get().job.get("num") == self.num and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGINT)
'''


def test_ctrl_c_during_an_optuna_sweep_keeps_the_study_and_says_how_to_resume(
    tmp_path: Path, words_file: Path
) -> None:
    (tmp_path / "interrupter.py").write_text(INTERRUPTER)
    command = train_command(
        words_file,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweep.dir=study",
        "+callbacks.ctrl_c._target_=interrupter.CtrlCAtJob",
        "+callbacks.ctrl_c.num=1",
        f"+callbacks.ctrl_c.marker={tmp_path / 'pressed'}",
    )
    interrupted = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert interrupted.returncode == 130, interrupted.stderr[-3000:]
    error = interrupted.stderr.strip().splitlines()[-1]
    assert error == (
        f"error: interrupted: the Optuna study is kept in {tmp_path / 'study' / 'optuna.db'}; "
        f"resume it with the same command and hydra.sweep.dir={tmp_path / 'study'} (the trial "
        "that was running is marked failed and run anew)"
    )
    assert [(n, s) for n, s, _ in trials(tmp_path / "study" / "optuna.db")] == [
        (0, "COMPLETE"),
        (1, "RUNNING"),
    ]
    resumed = run_in_process("bigramlab.train", *command[3:], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    states = [s for _, s, _ in trials(tmp_path / "study" / "optuna.db")]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]
