"""The failure policy of the commands, each run in its own process as a user runs it: one `error:`
line, exit status 2, nothing left behind; resuming a run only on its own data."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_words

pytestmark = pytest.mark.slow


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines


@pytest.fixture(scope="module")
def names_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """(working directory with a cached names.txt, a 40-step names run in it, its checksum)."""
    cwd = tmp_path_factory.mktemp("names")
    names = cwd / "data" / "names.txt"
    names.parent.mkdir()
    names.write_text("\n".join(make_words(400, seed=3)) + "\n")
    sha = hashlib.sha256(names.read_bytes()).hexdigest()
    result = run("bigramlab.train", "dataset=names", f"dataset.sha256={sha}",
                 "trainer.max_steps=40", "trainer.val_check_interval=20", cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr
    (run_dir,) = (cwd / "logs" / "train" / "runs").iterdir()
    return cwd, run_dir, sha


def test_evaluate_on_names_as_readme_shows_it(names_run) -> None:
    cwd, run_dir, sha = names_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    result = run("bigramlab.evaluate", f"ckpt={ckpt}", "dataset=names", f"dataset.sha256={sha}",
                 cwd=cwd)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["train", "val", "test"]


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
    result = run("bigramlab.evaluate", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *args,
                 cwd=cwd)  # fmt: skip
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
    result = run("bigramlab.sample", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", *args,
                 cwd=cwd)  # fmt: skip
    assert_one_error_line(result, message)


def test_sample_names_the_checkpoint_inside_a_run_directory(names_run) -> None:
    cwd, run_dir, _ = names_run
    result = run("bigramlab.sample", f"ckpt={run_dir}", cwd=cwd)
    assert_one_error_line(result, f"e.g. ckpt={run_dir / 'checkpoints' / 'last.ckpt'}")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
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
    ],
)
def test_bad_train_values_are_one_line_and_leave_no_run_directory(
    tmp_path: Path, words_file: Path, overrides: list[str], message: str
) -> None:
    result = run("bigramlab.train", "dataset=text_file", f"dataset.path={words_file}",
                 "trainer.max_steps=5", *overrides, cwd=tmp_path)  # fmt: skip
    assert_one_error_line(result, message)
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("*.hydra"))


def test_hydra_errors_exit_with_status_1_as_documented(tmp_path: Path) -> None:
    result = run("bigramlab.train", "dataset=nope", cwd=tmp_path)
    assert result.returncode == 1 and "Could not find 'dataset/nope'" in result.stderr


def test_resuming_on_other_data_is_refused_and_the_run_record_kept(names_run) -> None:
    cwd, run_dir, _ = names_run
    record = (run_dir / ".hydra" / "config.yaml").read_text()
    result = run(
        "bigramlab.train",
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
        "trainer.max_steps=60",
        cwd=cwd,
    )  # fmt: skip (no dataset=names: words)
    assert_one_error_line(result, "was trained with other data (dataset._target_ was")
    assert "dataset=names" in result.stderr  # the overrides to resume with
    assert (run_dir / ".hydra" / "config.yaml").read_text() == record
    assert [p.name for p in (run_dir / ".hydra").iterdir() if p.is_dir()] == []


def test_resuming_to_a_step_not_past_the_checkpoint_is_refused(names_run) -> None:
    cwd, run_dir, sha = names_run
    result = run("bigramlab.train", "dataset=names", f"dataset.sha256={sha}",
                 f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", "trainer.max_steps=40",
                 cwd=cwd)  # fmt: skip
    assert_one_error_line(result, "trainer.max_steps=40 is not past the checkpoint's step 40")


def test_resuming_keeps_the_run_record_and_adds_its_own(tmp_path: Path, words_file: Path) -> None:
    data = ["dataset=text_file", f"dataset.path={words_file}", "trainer.val_check_interval=10"]
    first = run("bigramlab.train", *data, "trainer.max_steps=20", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    (run_dir,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    record = (run_dir / ".hydra" / "overrides.yaml").read_text()
    resumed = run("bigramlab.train", *data, "trainer.max_steps=30",
                  f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert (run_dir / ".hydra" / "overrides.yaml").read_text() == record
    (resume_record,) = (run_dir / ".hydra").glob("resume_*/overrides.yaml")
    assert "trainer.max_steps=30" in resume_record.read_text()


def test_output_is_bigramlabs_not_its_dependencies_chatter(tmp_path: Path) -> None:
    words = tmp_path / "w.txt"
    words.write_text("\n".join(make_words(50)) + "\n")
    result = run("bigramlab.train", "dataset=text_file", f"dataset.path={words}",
                 "trainer.max_steps=5", "data.split=[1,0,0]", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    output = result.stdout + result.stderr
    assert "💡 Tip" not in output and "LeafSpec" not in output and "weights_only" not in output
    assert "= inf" not in output and "objective val_nll: none, its split is empty" in output
