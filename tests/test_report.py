"""`python -m bigramlab.report` ranks only what compares: jobs of one data set and split, counted
rows of the jobs' own words, every setting that was chosen named; mistakes are one error line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigramlab.sweeps.report import figure_val_nll, group_repeats, rank, read_job, varying_keys
from tests.conftest import make_words
from tests.helpers import assert_one_error_line
from tests.helpers import run_in_process as run_module

pytestmark = pytest.mark.slow
QUICK = [
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "callbacks.report.figures_every_n_steps=1000",
    "callbacks.progress_bar.refresh_rate=0",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with two words files and, in it: `a_grid` (a sweep of lr × reg on
    a.txt, contexts 1 and 2, interpolated), `b_run` (a run of b.txt), `pairs` (reg and α walked
    together, as experiment=reg_vs_smoothing does)."""
    cwd = tmp_path_factory.mktemp("report")
    (cwd / "a.txt").write_text("\n".join(make_words(300, seed=1)) + "\n")
    (cwd / "b.txt").write_text("\n".join(make_words(300, seed=2, alphabet="klmnopq")) + "\n")
    commands = [
        [
            "-m",
            "dataset=text_file",
            "dataset.path=a.txt",
            "model.features=interpolated",
            "optim=lbfgs",
            "model.context=1,2",
            "optim.lr=0.5,1",
            "model.reg=0.001,0.01",
            "hydra.sweep.dir=a_grid",
        ],
        ["dataset=text_file", "dataset.path=b.txt", "hydra.run.dir=b_run"],
        [
            "experiment=reg_vs_smoothing",
            "dataset=text_file",
            "dataset.path=a.txt",
            "hydra.sweeper.params.pair='{reg:0.001,alpha:0.1},{reg:0.01,alpha:1},{reg:0.1,alpha:10}'",
            "hydra.sweep.dir=pairs",
        ],
    ]
    for command in commands:
        result = run_module("bigramlab.train", *command, *QUICK, cwd=cwd)
        assert result.returncode == 0, result.stderr[-3000:]
    return cwd


def test_runs_of_different_data_are_refused_in_one_ranking(runs: Path) -> None:
    result = run_module("bigramlab.report", "a_grid", "b_run", "--out", "both", cwd=runs)
    line = assert_one_error_line(result, "were trained on different data")
    assert "dataset.path=" in line and "add --mixed" in line
    assert not (runs / "both").exists()


def test_mixed_ranks_each_datas_jobs_apart(runs: Path) -> None:
    result = run_module(
        "bigramlab.report", "a_grid", "b_run", "--out", "mixed", "--mixed", cwd=runs
    )
    assert result.returncode == 0, result.stderr
    table = (runs / "mixed" / "report.md").read_text().splitlines()
    header = next(line for line in table if line.startswith("| # |"))
    assert header.startswith("| # | data | sweep |")
    rows = [line.split(" | ") for line in table if line.startswith("| ") and line[2].isdigit()]
    data = [row[1] for row in rows]
    # Each data's rows together, a.txt's first (the order given).
    assert all(str(runs / "a.txt") in d for d in data[:8]) and str(runs / "b.txt") in data[8]


def test_every_setting_the_grid_varied_is_a_column(runs: Path) -> None:
    result = run_module("bigramlab.report", "a_grid", cwd=runs)
    assert result.returncode == 0, result.stderr
    header = next(line for line in (runs / "a_grid" / "report.md").read_text().splitlines()
                  if line.startswith("| # |"))  # fmt: skip
    assert header.startswith("| # | jobs | status | context | lr | reg | train_nll")


def test_a_dict_valued_sweep_shows_its_settings_not_a_pair_column(runs: Path) -> None:
    result = run_module("bigramlab.report", "pairs", cwd=runs)
    assert result.returncode == 0, result.stderr
    report = (runs / "pairs" / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| # |"))
    assert header.startswith("| # | jobs | status | reg | alpha |") and "pair" not in header
    assert "pair" not in (runs / "pairs" / "results.csv").read_text().splitlines()[0]


def test_reg_against_smoothing_draws_one_learned_curve_and_the_counted_curve(runs: Path) -> None:
    jobs = [read_job(d.parent, "pairs") for d in sorted((runs / "pairs").glob("*/.hydra"))]
    rows = rank(group_repeats(jobs, []))
    settings = varying_keys(rows, [])
    ax = figure_val_nll(rows, settings).axes[0]
    curves = [line for line in ax.get_lines() if len(line.get_xdata()) > 1]
    assert len(curves) == 2  # the learned model against reg, the counted model against α
    assert sorted(curves[0].get_xdata()) == [0.001, 0.01, 0.1]
    assert sorted(curves[1].get_xdata()) == [0.1, 1, 10]


def test_by_order_counts_the_jobs_own_data_and_names_every_chosen_setting(runs: Path) -> None:
    result = run_module("bigramlab.report", "a_grid", "--by-order", "--orders", "1,2", cwd=runs)
    assert result.returncode == 0, result.stderr
    table = (runs / "a_grid" / "ngram_report.md").read_text()
    learned = [line for line in table.splitlines() if line.startswith("| learned")]
    assert len(learned) == 3  # 2 orders, and the best order
    assert all(", lr " in line and "lr, reg tuned on dev" in line for line in learned)
    assert {line.split(" | ")[1] for line in table.splitlines() if "Kneser" in line} == {"1", "2"}


def test_by_order_with_the_jobs_own_file_as_data_is_the_same_table(runs: Path) -> None:
    first = run_module("bigramlab.report", "a_grid", "--by-order", "--out", "own", cwd=runs)
    given = run_module(
        "bigramlab.report", "a_grid", "--by-order", "--data", "a.txt", "--out", "given", cwd=runs
    )
    assert first.returncode == 0 and given.returncode == 0, given.stderr
    own = (runs / "own" / "ngram_report.md").read_text()
    assert own == (runs / "given" / "ngram_report.md").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "b.txt"], "--data b.txt is not the jobs' data"),
        (["--data", "nope.txt"], "--data nope.txt does not exist"),
        (["--orders", "0-2"], "--orders 0-2: orders are whole numbers from 1"),
        (["--orders", "3-1"], "--orders 3-1: orders are whole numbers from 1"),
        (["--orders", "x"], "--orders x: give orders as 3, 1-3 or 1,2,5"),
        (["--mixed"], "--by-order reads one data's dev and test words"),
    ],
)
def test_by_order_mistakes_are_one_error_line(runs: Path, args: list[str], message: str) -> None:
    result = run_module("bigramlab.report", "a_grid", "--by-order", *args, "--out", "x", cwd=runs)
    assert_one_error_line(result, message)
    assert not (runs / "x").exists()


def test_a_data_set_too_small_for_a_dev_split_is_one_error_line(runs: Path) -> None:
    (runs / "tiny.txt").write_text("ab\nba\nabc\n")
    result = run_module(
        "bigramlab.train", "dataset=text_file", "dataset.path=tiny.txt", "data.split=[0.5,0.3,0.2]",
        "hydra.run.dir=tiny", *QUICK, cwd=runs,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr  # training takes it: its val NLL is null
    report = run_module("bigramlab.report", "tiny", "--by-order", cwd=runs)
    assert_one_error_line(
        report, "tiny.txt has 3 words: the split [0.5, 0.3, 0.2] leaves dev empty"
    )
