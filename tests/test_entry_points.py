"""The failure policy of the commands as a user runs them: one `error:` line, exit status 2,
nothing left behind; resuming a run only on its own data. In the test's process, but where the
process is what is tested (Ctrl-C, a pipe closed early, warnings)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_words
from tests.helpers import assert_one_error_line, run_in_process, run_module

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def names_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(working directory with a cached names.txt, a 40-step names run in it, its checksum). The
    run is split as the lecture splits and compared with Kneser–Ney, neither of them evaluate's
    defaults."""
    cwd = tmp_path_factory.mktemp("names")
    names = cwd / "data" / "names.txt"
    names.parent.mkdir()
    names.write_text("\n".join(make_words(400, seed=3)) + "\n")
    sha = hashlib.sha256(names.read_bytes()).hexdigest()
    result = run_in_process(
        "bigramlab.train",
        "dataset=names",
        f"dataset.sha256={sha}",
        "data.split_rule=lecture",
        "counted.smoothing=kneser_ney",
        "trainer.max_steps=40",
        "trainer.val_check_interval=20",
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    return cwd, run_dir, sha


def table(stdout: str) -> dict[str, list[str]]:
    """evaluate's table: split -> its columns (words, events, nll, ppl, counted_nll and
    counted_ppl)."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("split "))
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1 : start + 4]}


@pytest.mark.parametrize("data", [["dataset=names"], []], ids=["readme", "no-data-given"])
def test_evaluate_scores_the_run_on_its_own_split_and_counted_model(names_run, data) -> None:
    """README's command on a run split as the lecture splits, compared with Kneser–Ney: the
    run's own NLLs (metrics.json), not those of evaluate's default split and α = 1."""
    cwd, run_dir, _ = names_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = run_in_process("bigramlab.evaluate", f"ckpt={ckpt}", *data, cwd=cwd)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = table(result.stdout)
    assert list(rows) == ["train", "val", "test"]
    for split, (_, _, nll, _, counted, _) in rows.items():
        assert float(nll) == pytest.approx(metrics[f"{split}_nll"], abs=1e-6)
        assert float(counted) == pytest.approx(metrics[f"counted_{split}_nll"], abs=1e-6)
    assert "data.split_rule=lecture, from the checkpoint" in result.stdout
    assert "counted: counted.smoothing=kneser_ney, from the checkpoint" in result.stdout


def test_evaluate_says_which_settings_are_overridden(names_run) -> None:
    cwd, run_dir, _ = names_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = run_in_process(
        "bigramlab.evaluate", f"ckpt={ckpt}", "data.split_rule=randperm", cwd=cwd
    )
    assert result.returncode == 0, result.stderr
    assert "data.split_rule=randperm: overridden; the run used lecture" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert float(table(result.stdout)["test"][2]) != pytest.approx(metrics["test_nll"], abs=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["words=emma"], "words='emma' is not a list: write words=[emma]"),
        (["words=[a.b]"], "'a.b' contains '.', the word-boundary token"),
        (["words=[emma]", "ckpt=."], "is a directory: pass a .ckpt file"),
    ],
)
def test_evaluate_refuses_words_it_would_misread(names_run, args, message) -> None:
    cwd, run_dir, _ = names_run
    result = run_in_process(
        "bigramlab.evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *args, cwd=cwd
    )
    assert_one_error_line(result, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["max_length=0"], "max_length=0 is not a whole number >= 1"),
        (["max_length=-1"], "max_length=-1 is not a whole number >= 1"),
        (["n=-3"], "n=-3 is not a whole number >= 0"),
        (["seed=abc"], "seed='abc' is not a whole number >= 0"),
    ],
)
def test_sample_refuses_bad_values(names_run, args, message) -> None:
    cwd, run_dir, _ = names_run
    result = run_in_process(
        "bigramlab.sample", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *args, cwd=cwd
    )
    assert_one_error_line(result, message)


def test_sample_names_the_checkpoint_inside_a_run_directory(names_run) -> None:
    cwd, run_dir, _ = names_run
    result = run_in_process("bigramlab.sample", f"ckpt={run_dir}", cwd=cwd)
    assert_one_error_line(result, f"e.g. ckpt={run_dir / 'checkpoints' / 'last.ckpt'}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim.lr=-1"], "optim.lr=-1 is out of range"),
        (["model.reg=-0.1"], "model.reg=-0.1 is out of range"),
        (["data.split=[0.5,0.1,0.1]"], "must be fractions in [0, 1] that sum to 1"),
        (["dataset=text_file"], "dataset.path is required"),
        (["dataset=text_file", "dataset.path=missing.txt"], "missing.txt does not exist"),
        (["model.loss_form=fast"], "model.loss_form='fast' is unknown"),
        (["trainer=ddp_cpu", "trainer.devices=0"], "trainer.devices=0"),
        (["trainer=ddp_cpu", "trainer.strategy=foo"], "invalid strategy name"),
        (["model.context=0"], "model.context=0 is not a whole number >= 1"),
        (["model.context=3", "data.batch_size=64"], "model.context=3 trains full batch"),
        (["model.features=bag"], "model.features='bag' is unknown"),
        (["model.context=2", "model.reg_by_length=[1,1]"], "needs 3 values for suffixes of at"),
        (
            ["model.context=4", "model.max_span=2", "model.reg_by_length=[1,1,1,1,1]"],
            "needs 3 values for suffixes of at most 2 tokens",
        ),
        (["model.features=skipgram", "model.reg_skip=-1"], "model.reg_skip=-1 is out of range"),
        (["model.features=skipgram+length"], "family 'length' is unknown"),
        (["model.features=interpolated+start+start"], "names a family twice"),
        (["model.features=onehot+position"], "onehot has a row per whole context"),
        (["model.context=3", "model.max_span=4"], "model.max_span=4 is out of range"),
        (["model.max_span=abc"], "model.max_span=abc is out of range"),
        (["model.reg_position=-1"], "model.reg_position=-1 is out of range"),
        (["model.reg_start=x"], "model.reg_start='x' is not a number"),
        (["model.reg_gaps=-1"], "model.reg_gaps=-1 is out of range"),
        (["model.reg_classes=nan"], "model.reg_classes=nan is out of range"),
        (["counted.smoothing=good_turing"], "counted.smoothing='good_turing' is unknown"),
        (["seed=abc"], "seed='abc' is not a whole number >= 0"),
        (["model.init_seed=abc"], "model.init_seed='abc' is not a whole number >= 0"),
        (["data.split_seed=1.5"], "data.split_seed=1.5 is not a whole number >= 0"),
        (["+optim.lrr=10"], "optim.lrr is not a setting of torch.optim.SGD"),
        (["+optim.lrr=10"], "(did you mean optim.lr?)"),
        (
            ["+trainer.max_step=10"],
            "trainer.max_step is not a setting of lightning.pytorch.Trainer",
        ),
        (["+trainer.max_step=10"], "(did you mean trainer.max_steps?)"),
        (["callbacks.divergence.max_loss=5"], "use callbacks.step_losses.max_loss"),
        (["model=bigram"], "model=bigram was renamed: use model=learned"),
        (["mle.alpha=0.5"], "mle.alpha was renamed: use counted.alpha"),
        (["model.impl=index"], "model.impl was renamed: use model.loss_form"),
        (["mle.smoothing=kneser_ney"], "mle.smoothing was renamed: use counted.smoothing"),
    ],
)
def test_bad_train_values_are_one_line_and_leave_no_run_directory(
    tmp_path: Path, overrides: list[str], message: str
) -> None:
    """Every check runs before any data is read (the default data set, `words`, is never
    loaded) and before Hydra's run directory is kept."""
    result = run_in_process("bigramlab.train", "trainer.max_steps=5", *overrides, cwd=tmp_path)
    assert_one_error_line(result, message)
    assert not (tmp_path / "logs").exists()


def test_hydra_errors_exit_with_status_1_as_documented(tmp_path: Path) -> None:
    result = run_in_process("bigramlab.train", "dataset=nope", cwd=tmp_path)
    assert result.returncode == 1 and "Could not find 'dataset/nope'" in result.stderr


def test_resuming_on_other_data_is_refused_and_the_run_record_kept(names_run) -> None:
    cwd, run_dir, _ = names_run
    record = (run_dir / ".hydra" / "config.yaml").read_text()
    result = run_in_process(
        "bigramlab.train",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_steps=60",
        cwd=cwd,
    )
    assert_one_error_line(result, "was trained with other data (dataset was names, is words)")
    assert "dataset=names" in result.stderr  # the overrides to resume with
    assert (run_dir / ".hydra" / "config.yaml").read_text() == record
    assert [p.name for p in (run_dir / ".hydra").iterdir() if p.is_dir()] == []


def test_resuming_to_a_step_not_past_the_checkpoint_is_refused(names_run) -> None:
    cwd, run_dir, sha = names_run
    result = run_in_process(
        "bigramlab.train",
        "dataset=names",
        f"dataset.sha256={sha}",
        "data.split_rule=lecture",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_steps=40",
        cwd=cwd,
    )
    assert_one_error_line(result, "trainer.max_steps=40 is not past the checkpoint's step 40")


def test_resuming_keeps_the_run_record_and_adds_its_own(tmp_path: Path, words_file: Path) -> None:
    data = ["dataset=text_file", f"dataset.path={words_file}", "trainer.val_check_interval=10"]
    first = run_in_process("bigramlab.train", *data, "trainer.max_steps=20", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    record = (run_dir / ".hydra" / "overrides.yaml").read_text()
    resumed = run_in_process(
        "bigramlab.train",
        *data,
        "trainer.max_steps=30",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        cwd=tmp_path,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == record
    (resume_record,) = (run_dir / ".hydra").glob("resume_*/overrides.yaml")
    assert "trainer.max_steps=30" in resume_record.read_text()


def test_output_is_bigramlabs_not_its_dependencies_chatter(tmp_path: Path) -> None:
    # In a process of its own: a warning this process has shown once is not shown again.
    words = tmp_path / "w.txt"
    words.write_text("\n".join(make_words(50)) + "\n")
    result = run_module(
        "bigramlab.train",
        "dataset=text_file",
        f"dataset.path={words}",
        "trainer.max_steps=5",
        "data.split=[1,0,0]",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "💡 Tip" not in output and "LeafSpec" not in output and "weights_only" not in output
    assert "= inf" not in output and "objective val_nll: none, its split is empty" in output


@pytest.mark.parametrize(
    ("ckpt_path", "message"),
    [
        ("x.ckpt", "checkpoint x.ckpt does not exist: check ckpt_path"),
        (".", "is a directory: pass a .ckpt file, e.g. ckpt_path="),
        ("words.txt", "words.txt is not a PyTorch checkpoint file"),
        (
            "logs/train/runs/nothere/checkpoints/last.ckpt",
            "checkpoint logs/train/runs/nothere/checkpoints/last.ckpt does not exist",
        ),
    ],
)
def test_a_refused_ckpt_path_leaves_nothing_on_disk(
    tmp_path: Path, words_file: Path, ckpt_path: str, message: str
) -> None:
    result = run_in_process(
        "bigramlab.train",
        "dataset=text_file",
        f"dataset.path={words_file}",
        f"ckpt_path={ckpt_path}",
        cwd=tmp_path,
    )
    assert_one_error_line(result, message)
    assert [p.name for p in tmp_path.iterdir()] == ["words.txt"]


def test_the_likelihood_of_data_with_no_spread_is_refused(tmp_path: Path) -> None:
    result = run_in_process("bigramlab.likelihood", "data=[2,2,2]", cwd=tmp_path)
    assert_one_error_line(result, "data=[2, 2, 2] has no spread: σ̂ = 0")
    assert list(tmp_path.iterdir()) == []


def test_a_diverged_likelihood_fit_records_why_and_draws_nothing(tmp_path: Path) -> None:
    result = run_in_process("bigramlab.likelihood", "fit.lr=100", "hydra.run.dir=fit", cwd=tmp_path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: gradient descent diverged at step ")
    assert "with fit.lr=100: lower fit.lr below 2·σ̂² = 20.1" in last
    metrics = json.loads((tmp_path / "fit" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["reason"] == last.removeprefix("error: ")
    assert not (tmp_path / "fit" / "figures").exists()


def test_files_written_whole_get_the_mode_of_every_other_file(
    tmp_path: Path, words_file: Path
) -> None:
    data = ["dataset=text_file", f"dataset.path={words_file}"]
    before = os.umask(0o022)  # the user's umask, for this process and what it runs
    try:
        trained = run_in_process(
            "bigramlab.train", *data, "trainer.max_steps=5", "hydra.run.dir=run", cwd=tmp_path
        )
        assert trained.returncode == 0, trained.stderr
        out = ["ckpt=run/checkpoints/last.ckpt", "out=m.arpa"]
        exported = run_in_process("bigramlab.export", *out, cwd=tmp_path)
        assert exported.returncode == 0, exported.stderr
    finally:
        os.umask(before)
    run_dir = tmp_path / "run"
    modes = {
        path.name: stat.S_IMODE(path.stat().st_mode)
        for path in (
            run_dir / ".hydra" / "config.yaml",
            run_dir / "metrics.json",
            run_dir / "checkpoints" / "last.ckpt",
            tmp_path / "m.arpa",
        )
    }
    assert modes == dict.fromkeys(modes, 0o644)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (
            ["bigramlab.train", "counted.smoothing=kneser_ney", "counted.alpha=0.5"],
            "counted.alpha=0.5 is not used by counted.smoothing=kneser_ney",
        ),
        (
            [
                "bigramlab.export",
                "source=counted",
                "counted.smoothing=kneser_ney",
                "counted.alpha=0.5",
                "out=m.arpa",
            ],
            "counted.alpha=0.5 is not used by counted.smoothing=kneser_ney",
        ),
        (
            ["bigramlab.export", "source=counted", "ckpt=x.ckpt", "out=m.arpa"],
            "ckpt=x.ckpt is not used with source=counted",
        ),
        (
            ["bigramlab.export", "ckpt=x.ckpt", "model.context=3", "out=m.arpa"],
            "model.context=3 is not used when a checkpoint is exported",
        ),
        (
            ["bigramlab.export", "ckpt=x.ckpt", "counted.smoothing=kneser_ney", "out=m.arpa"],
            "counted.smoothing=kneser_ney is not used when a checkpoint is exported",
        ),
    ],
)
def test_settings_that_would_be_ignored_are_refused(
    tmp_path: Path, words_file: Path, command: list[str], message: str
) -> None:
    data = ["dataset=text_file", f"dataset.path={words_file}"]
    if "ckpt=x.ckpt" in command and "source=counted" not in command:
        data = []  # the checkpoint's settings alone; dataset= would be refused as well
    result = run_in_process(*command, *data, cwd=tmp_path)
    assert_one_error_line(result, message)
    assert [p.name for p in tmp_path.iterdir()] == ["words.txt"]


def test_export_of_a_counted_model_names_its_data_set(tmp_path: Path, words_file: Path) -> None:
    result = run_in_process(
        "bigramlab.export",
        "source=counted",
        "dataset=text_file",
        f"dataset.path={words_file}",
        "counted.smoothing=kneser_ney",
        "out=m.arpa",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(
        f"wrote m.arpa ({(tmp_path / 'm.arpa').stat().st_size:,} bytes): the counted model of "
        f"dataset=text_file dataset.path={words_file} (randperm split, train words; "
        "model.context=1 counted.smoothing=kneser_ney), "
    )
    assert "alpha" not in result.stdout


def test_a_run_into_a_directory_holding_a_run_is_refused_and_the_run_kept(
    tmp_path: Path, words_file: Path
) -> None:
    data = ["dataset=text_file", f"dataset.path={words_file}", "trainer.max_steps=10"]
    first = run_in_process("bigramlab.train", *data, "hydra.run.dir=run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")}
    again = run_in_process(
        "bigramlab.train", *data, "optim.lr=1", "hydra.run.dir=run", cwd=tmp_path
    )
    line = assert_one_error_line(again, f"hydra.run.dir={tmp_path / 'run'} holds a run")
    assert f"ckpt_path={tmp_path / 'run' / 'checkpoints' / 'last.ckpt'}" in line
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "run").rglob("*")} == before


def test_a_sweep_into_a_sweep_directory_holding_a_sweep_is_refused(
    tmp_path: Path, words_file: Path
) -> None:
    args = ["-m", "dataset=text_file", f"dataset.path={words_file}", "trainer.max_steps=2"]
    first = run_in_process(
        "bigramlab.train", *args, "optim.lr=1,2", "hydra.sweep.dir=s", cwd=tmp_path
    )
    assert first.returncode == 0, first.stderr
    record = (tmp_path / "s" / "multirun.yaml").read_text()
    again = run_in_process(
        "bigramlab.train", *args, "optim.lr=3", "hydra.sweep.dir=s", cwd=tmp_path
    )
    assert_one_error_line(again, f"hydra.sweep.dir={tmp_path / 's'} holds a sweep already")
    assert (tmp_path / "s" / "multirun.yaml").read_text() == record
    assert sorted(p.name for p in (tmp_path / "s").iterdir() if p.is_dir()) == [
        "0_lr=1,steps=2",
        "1_lr=2,steps=2",
    ]


def test_ctrl_c_during_train_prints_the_run_directory_and_how_to_resume(
    tmp_path: Path, words_file: Path
) -> None:
    args = [
        "dataset=text_file",
        f"dataset.path={words_file}",
        "trainer.max_steps=10000000",
        "callbacks.checkpoint.every_n_train_steps=5",
        "hydra.run.dir=run",
    ]
    process = subprocess.Popen(
        # faulthandler: where a process that does not end after Ctrl-C is stuck (SIGABRT below)
        [sys.executable, "-X", "faulthandler", "-m", "bigramlab.train", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As a shell starts it: Ctrl-C not ignored, whatever this process inherited.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 120
    while not ckpt.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        _, stderr = process.communicate(timeout=60)
        pytest.fail(f"train did not end within 120 s of Ctrl-C; its threads:\n{stderr[-8000:]}")
    assert process.returncode != 0
    assert f"run directory: {tmp_path / 'run'}" in stderr
    resume = next(line.strip() for line in stderr.splitlines() if "ckpt_path=" in line)
    assert resume == (
        f"python -m bigramlab.train dataset=text_file dataset.path={words_file} "
        "trainer.max_steps=10000000 callbacks.checkpoint.every_n_train_steps=5 "
        f"ckpt_path={ckpt}"  # a resume goes on in the run directory of its checkpoint
    )


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (["bigramlab.export", "ckpt=x.ckpt"], "no output file given: add out=<file>.arpa"),
        (
            ["bigramlab.likelihood", "data=[1,2,3]", "sample.n=10"],
            "data=[...] and sample.n=10 both give the data",
        ),
    ],
)
def test_mistakes_that_raised_a_traceback_are_one_line(
    tmp_path: Path, command: list[str], message: str
) -> None:
    result = run_in_process(*command, cwd=tmp_path)
    assert_one_error_line(result, message)
    assert list(tmp_path.iterdir()) == []


def test_sample_names_no_fix_that_sample_would_refuse(names_run) -> None:
    cwd, run_dir, _ = names_run
    result = run_in_process(
        "bigramlab.sample", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", "model=bigram", cwd=cwd
    )
    assert result.returncode != 0
    assert "model=learned" not in result.stderr


@pytest.mark.parametrize("command", ["train", "sample", "evaluate", "export", "likelihood"])
def test_help_begins_with_the_commands_usage(tmp_path: Path, command: str) -> None:
    result = run_in_process(f"bigramlab.{command}", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"python -m bigramlab.{command} ")
    assert "powered by Hydra" not in result.stdout


def test_the_old_sweep_report_script_points_to_the_command(tmp_path: Path) -> None:
    script = Path(__file__).resolve().parents[1] / "scripts" / "sweep_report.py"
    result = subprocess.run(
        [sys.executable, str(script), "logs/train/multiruns/x"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert_one_error_line(result, "run python -m bigramlab.report logs/train/multiruns/x")


def test_output_piped_into_head_ends_without_a_traceback(names_run) -> None:
    cwd, run_dir, _ = names_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = subprocess.run(
        # More than the pipe's and stdout's buffers hold once head has gone.
        f"{sys.executable} -m bigramlab.sample ckpt={ckpt} n=4000 | head -2",
        shell=True,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert len(result.stdout.splitlines()) == 2
    assert "Traceback" not in result.stderr and "Error" not in result.stderr, result.stderr
