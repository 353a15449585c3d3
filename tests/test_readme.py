"""Every command of the code blocks of README.md and docs/*.md, run as written, so that a
documented command that fails (a renamed key, a removed option) fails the suite.

Each runs in its own process (`python -m bigramlab.*` forked from a Python that has done the
commands' imports: tests/helpers.PreloadedPython), once (README and a page repeat a few), in
README's order and then the pages' (alphabetically), in one working directory with local data: a
generated names.txt in its data cache (with its checksum given, so nothing is downloaded) and the
`my_words.txt` that README's text_file example names. Training commands get a few steps
(`trainer.max_steps=4`), a sweep two jobs (see two_jobs) and Optuna two trials, and a run whose
config is one a command before it ran is skipped; the GPU commands are skipped without a GPU, the
SLURM one is only composed (there is no cluster), the TensorBoard server is replaced by its
`--inspect` mode, the multi-node `srun` command is only composed, `scripts/run.sh test` is this
suite itself, and the benchmark scripts, which measure for minutes, are left to a person (their
parts are tested in tests/test_benchmark_ngrams.py).
"""

from __future__ import annotations

import hashlib
import re
import shlex
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from tests.conftest import compose_config, make_words
from tests.helpers import PreloadedPython

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=4", "trainer.val_check_interval=2"]
USES_NAMES = re.compile(
    r"dataset=names|experiment=(makemore|reg_vs_smoothing|ngram_best|ngram_orders|features_best|features_sweep)"
)


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) of every ```bash block of the documents, without trailing comments."""
    commands = []
    for page in DOCUMENTS:
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.DOTALL):
            for line in block.splitlines():
                line = re.sub(r"\s+#.*$", "", line).strip()
                if line and not line.startswith("#"):
                    commands.append((page.relative_to(ROOT).as_posix(), line))
    return commands


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(the working directory, the checksum of its data/names.txt)."""
    cwd = tmp_path_factory.mktemp("readme")
    names = cwd / "data" / "names.txt"
    names.parent.mkdir()
    names.write_text("\n".join(make_words(500, seed=11, alphabet=string.ascii_lowercase)) + "\n")
    (cwd / "my_words.txt").write_text("\n".join(make_words(200, seed=12)).upper() + "\n")
    return cwd, hashlib.sha256(names.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def python(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PreloadedPython]:
    preloaded = PreloadedPython(tmp_path_factory.mktemp("outputs"))
    yield preloaded
    preloaded.close()


def execute(
    argv: list[str], cwd: Path, python: PreloadedPython
) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own: `python -m bigramlab.*` forked from `python`,
    anything else (scripts/run.sh, tensorboard, a script) started anew."""
    if argv[:2] == [sys.executable, "-m"] and argv[2].startswith("bigramlab."):
        result = python.run(argv[2], *argv[3:], cwd=cwd)
    else:
        result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{shlex.join(argv)}\n{result.stdout[-3000:]}\n{result.stderr}"
    return result


def latest(path: Path) -> Path:
    return max(path.iterdir(), key=lambda p: p.stat().st_mtime)


def run_dir(cwd: Path, sha: str, python: PreloadedPython) -> Path:
    """The latest finished bigram run in `cwd` (README's `<run dir>`: a run of its Quickstart, which
    every command given one can read, ARPA export included), trained here if there is none."""
    runs = cwd / "logs" / "train" / "runs"

    def bigrams() -> list[Path]:
        return [
            r
            for r in runs.iterdir()
            if (r / "checkpoints" / "last.ckpt").is_file()
            and OmegaConf.load(r / ".hydra" / "config.yaml").model.context == 1
        ]

    if not runs.is_dir() or not bigrams():
        execute(
            [
                sys.executable,
                "-m",
                "bigramlab.train",
                "dataset=names",
                f"dataset.sha256={sha}",
                *FAST,
            ],
            cwd,
            python,
        )
    return max(bigrams(), key=lambda p: p.stat().st_mtime)


def sweep_dir(cwd: Path, python: PreloadedPython, optuna: bool = False) -> Path:
    """README's `logs/train/multiruns/<time>`: the latest sweep in `cwd` (with `optuna`, the
    latest Optuna study), run here if none."""
    sweeps = cwd / "logs" / "train" / "multiruns"
    if not sweeps.is_dir():
        execute(
            [sys.executable, "-m", "bigramlab.train", "-m", "optim.lr=10,50", *FAST], cwd, python
        )
    if optuna:
        return max(
            (d for d in sweeps.iterdir() if (d / "optuna.db").is_file()),
            key=lambda d: d.stat().st_mtime,
        )
    return latest(sweeps)


def two_jobs(argv: list[str]) -> list[str]:
    """A sweep cut to two jobs: the first two values of its first setting, the first value of
    each other, as command-line overrides (which the basic sweeper takes over its config's, and
    which come after the command's own). The settings are the command line's lists, then its
    experiment's grid (hydra.sweeper.params): ngram_orders' 36 jobs are 2."""
    parser = OverridesParser.create()
    settings: dict[str, list[str]] = {}
    for arg in argv:
        if "=" in arg and not arg.startswith(("-", "hydra")):
            override = parser.parse_override(arg)
            if override.is_sweep_override():
                settings[override.key_or_group] = list(override.sweep_string_iterator())
    experiment = next((a.partition("=")[2] for a in argv if a.startswith("experiment=")), None)
    path = ROOT / "src" / "bigramlab" / "conf" / "experiment" / f"{experiment}.yaml"
    if experiment is not None and path.is_file():  # not a sweep's experiment/best_trial.yaml
        grid = OmegaConf.select(OmegaConf.load(path), "hydra.sweeper.params") or {}
        for key, value in grid.items():
            values = parser.parse_override(f"{key}={value}").sweep_string_iterator()
            settings.setdefault(key, list(values))
    return [
        f"{key}={','.join(values[: 2 if i == 0 else 1])}"
        for i, (key, values) in enumerate(settings.items())
    ]


def unique(commands: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each command once, with the pages that give it (README and a page repeat a few)."""
    pages: dict[str, list[str]] = {}
    for page, command in commands:
        pages.setdefault(command, []).append(page)
    return [(", ".join(dict.fromkeys(where)), command) for command, where in pages.items()]


COMMANDS = unique(documented_commands())
RUN_CONFIGS: dict[str, str] = {}  # the composed config of each single run so far -> its command


@pytest.mark.parametrize(
    ("page", "command"), COMMANDS, ids=[f"{page}: {command}" for page, command in COMMANDS]
)
def test_documented_command_runs_as_written(
    page: str, command: str, workdir: tuple[Path, str], python: PreloadedPython
) -> None:
    cwd, sha = workdir
    if command.startswith("scripts/run.sh test"):
        pytest.skip("the command that runs this suite")
    if command.startswith("python scripts/benchmark"):
        pytest.skip("a benchmark, minutes of measuring: run by hand on an idle machine")
    if "<your wheel index>" in command:
        pytest.skip("installs a PyTorch build from an index of the user's choice")
    if command.startswith("srun "):
        # Several nodes under SLURM: only composed, as there is no cluster.
        argv = shlex.split(command)
        cfg = compose_config("train", argv[argv.index("bigramlab.train") + 1 :], cwd)
        assert (cfg.trainer.strategy, cfg.trainer.num_nodes) == ("ddp", 2)
        return
    if re.search(r"trainer=(gpu|ddp)\b", command) and not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if "<run dir>" in command or "<run>" in command:
        ckpt_run = str(run_dir(cwd, sha, python))
        command = command.replace("<run dir>", ckpt_run).replace("<run>", ckpt_run)
    if "<time>" in command:
        optuna = "hparams_search=optuna" in command or "experiment=best_trial" in command
        command = command.replace(
            "logs/train/multiruns/<time>", str(sweep_dir(cwd, python, optuna))
        )
    if "<other time>" in command:  # another sweep: the earliest
        earliest = min((cwd / "logs" / "train" / "multiruns").iterdir(), key=lambda d: d.name)
        command = command.replace("logs/train/multiruns/<other time>", str(earliest))
    argv = shlex.split(command)
    assert "<" not in command, f"a placeholder this test does not know: {command}"

    if argv[0] == "python":
        argv[0] = sys.executable
    if argv[0].startswith(".venv/bin/"):
        argv[0] = str(Path(sys.executable).parent / Path(argv[0]).name)
    if argv[0] == "scripts/run.sh":
        argv[0] = str(ROOT / argv[0])
    if len(argv) > 1 and argv[1].startswith("scripts/"):
        argv[1] = str(ROOT / argv[1])
    if Path(argv[0]).name == "tensorboard":
        argv.insert(1, "--inspect")  # prints what the server would show, and exits

    trains = "bigramlab.train" in argv or argv[1:2] == ["train"]
    if trains:
        if "hydra/launcher=slurm" in argv:
            # Only composed, without the sweep's lists: there is no cluster to submit to.
            single = [
                a for a in argv[argv.index("bigramlab.train") + 1 :] if a != "-m" and "," not in a
            ]
            cfg = compose_config("train", single, cwd)
            assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
            return
        argv += FAST
        grid = two_jobs(argv)
        if "hparams_search=optuna" in argv:
            argv.append("hydra.sweeper.n_trials=2")
        else:
            argv += grid
        if USES_NAMES.search(command):
            argv.append(f"dataset.sha256={sha}")
        if argv[1:2] == ["train"]:  # scripts/run.sh runs in the repository: keep it out of logs/
            argv += [f"paths.log_dir={cwd / 'logs'}", f"paths.data_dir={cwd / 'data'}"]
        overrides = argv[3:] if "bigramlab.train" in argv else argv[2:]
        single_run = "-m" not in overrides and "hparams_search=optuna" not in overrides
        if single_run and not grid and "--config-dir" not in overrides:
            # A run whose config, composed, is one a command before it ran (the pages repeat
            # README's with settings these steps replace) adds nothing.
            cfg = compose_config("train", overrides, cwd)
            composed = OmegaConf.to_yaml(
                OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
            )
            if composed in RUN_CONFIGS:
                pytest.skip(f"the run of `{RUN_CONFIGS[composed]}` again (the same config)")
            RUN_CONFIGS[composed] = command
    if {"bigramlab.evaluate", "bigramlab.export"} & set(argv) and USES_NAMES.search(command):
        argv.append(f"dataset.sha256={sha}")

    result = execute(argv, cwd, python)
    if "bigramlab.sample" in argv:
        assert len(result.stdout.splitlines()) == 20
    sweeps = "-m" in argv or re.search(r"hparams_search=|experiment=reg_vs_smoothing", command)
    if trains and not sweeps:
        assert "run directory:" in result.stdout
