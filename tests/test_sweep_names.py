"""How a sweep names its jobs' directories and how its report formats a column: pure functions,
fast (the sweeps themselves run in tests/test_sweeps.py)."""

from __future__ import annotations

from bigramlab.plumbing.config import job_dir_name
from bigramlab.sweeps.report import formatted


def test_job_dir_names() -> None:
    assert job_dir_name(3, "model.reg=0.01,optim.lr=10") == "3_reg=0.01,lr=10"
    assert job_dir_name(0, "pair={reg:0.1,alpha:1}") == "0_reg=0.1,alpha=1"
    assert job_dir_name(1, "data.split_seed=2,x=a/b") == "1_split_seed=2,x=a_b"
    assert job_dir_name(4, "a.seed=1,b.seed=2") == "4_a.seed=1,b.seed=2"
    assert job_dir_name(2, "") == "2"
    # Optuna's draws: 4 significant digits, not 17.
    assert job_dir_name(5, "optim.lr=2.6671234567890123,model.reg=0.00026671234567890124") == (
        "5_lr=2.667,reg=0.0002667"
    )
    assert job_dir_name(6, "optim.lr=10.5,model.reg=1e-05") == "6_lr=10.5,reg=1e-05"
    # A float as Hydra writes it, and a list value with its commas.
    assert job_dir_name(7, "optim.lr=1000000000.0,data.split=[0.6,0.4,0]") == (
        "7_lr=1e+09,split=[0.6,0.4,0]"
    )


def test_report_columns_keep_one_number_format() -> None:
    rows = [
        {"reg": 0.0002667, "lr": 0.01, "val_nll": 2.5, "gap_val": 1},
        {"reg": 0.0011, "lr": 3, "val_nll": 2.45, "gap_val": 0.5},
        {"reg": None, "lr": 10, "val_nll": None, "gap_val": 0.25},
    ]
    cells = formatted(rows, ["reg", "lr", "val_nll", "gap_val"], 4, settings=["reg", "lr"])
    # Settings as they are typed; results in one format per column, integers included.
    assert [c[0] for c in cells] == ["0.0002667", "0.0011", "—"]
    assert [c[1] for c in cells] == ["0.01", "3", "10"]
    assert [c[2] for c in cells] == ["2.5000", "2.4500", "—"]
    assert [c[3] for c in cells] == ["1.0000", "0.5000", "0.2500"]
