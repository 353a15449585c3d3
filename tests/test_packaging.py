"""bigramlab as a wheel: built from the checkout, installed into a fresh virtual environment, and
every command run from a directory that is not the checkout, finding its configs in the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import make_words

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_installed_elsewhere_runs_every_command(tmp_path: Path) -> None:
    # Built from a copy of what the wheel is made of: pip builds in the source tree (build/).
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--quiet",
            "-w",
            str(dist),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = dist.glob("bigramlab-*.whl")

    # A fresh environment holding only the wheel; its dependencies (torch, Lightning, Hydra: GBs
    # to install again) come from this environment's site-packages, added after its own. Paths a
    # .pth file adds are not scanned for .pth files, so the checkout's editable install stays out.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    (work / "words.txt").write_text("\n".join(make_words(200, seed=5)) + "\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(python), *args], cwd=work, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, f"{args}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
        return result

    where = run(
        "-c", "import bigramlab.plumbing.config as c; print(c.__file__); print(c.CONFIG_DIR)"
    )
    module, config_dir = where.stdout.split()
    assert Path(module).is_relative_to(site) and Path(config_dir) == site / "bigramlab" / "conf"
    data = ["dataset=text_file", "dataset.path=words.txt"]
    run(
        "-m",
        "bigramlab.train",
        *data,
        "trainer.max_steps=10",
        "trainer.val_check_interval=5",
        "hydra.run.dir=run",
    )
    ckpt = "ckpt=run/checkpoints/last.ckpt"
    assert len(run("-m", "bigramlab.sample", ckpt, "n=5").stdout.splitlines()) == 5
    assert "val" in run("-m", "bigramlab.evaluate", ckpt, *data).stdout
    run("-m", "bigramlab.export", ckpt, "out=model.arpa")
    assert (work / "model.arpa").is_file()
    # The sweeper plugin travels in the wheel too.
    run(
        "-m",
        "bigramlab.train",
        *data,
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=1",
        "trainer.max_steps=5",
        "hydra.sweep.dir=study",
    )
    assert (work / "study" / "experiment" / "best_trial.yaml").is_file()
