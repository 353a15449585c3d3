"""The note's first half: every number it prints, the recovered A and B, and gradient descent on the
NLL reaching the closed-form MLE."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigramlab.errors import UserError
from bigramlab.likelihood import NOTE, data_points, describe_data, likelihood, note_numbers
from bigramlab.note.gaussian import closed_form_mle, density, interval_probability, round_parameters
from tests.conftest import compose_config
from tests.helpers import assert_one_error_line, run_in_process

DATA = NOTE["data"]


def test_probability_with_the_parameters_fixed() -> None:
    assert round(interval_probability(50, 52.5, 50, 2.5), 4) == 0.3413


def test_A_and_B_are_recovered_and_reproduce_the_densities() -> None:
    A = round_parameters(DATA, NOTE["densities_A"])
    B = round_parameters(DATA, NOTE["densities_B"])
    assert (A, B) == ((50.0, 5.0), (45.0, 8.0))
    assert [round(density(x, *A), 4) for x in DATA] == [0.0776, 0.0790, 0.0705, 0.0647, 0.0250]
    assert [round(density(x, *B), 4) for x in DATA] == [0.0445, 0.0431, 0.0322, 0.0293, 0.0144]


def test_the_exact_likelihoods_favour_A_by_the_ratio_of_their_products() -> None:
    """The note's products round each density first; from the exact densities (gaussian.density)
    the likelihoods differ from them in the fourth digit, and A still explains the data better."""
    exact_A = math.prod(density(x, 50, 5) for x in DATA)
    exact_B = math.prod(density(x, 45, 8) for x in DATA)
    assert exact_A == pytest.approx(7.002974767e-07, rel=1e-9)
    assert exact_B == pytest.approx(2.606803467e-08, rel=1e-9)
    assert exact_A == pytest.approx(NOTE["product_A"], rel=2e-3)
    assert exact_A / exact_B == pytest.approx(26.86, abs=0.01)


def test_closed_form_mle_is_the_mean_and_the_biased_std() -> None:
    mu, sigma = closed_form_mle(torch.tensor(DATA))
    assert (round(mu, 3), round(sigma, 3)) == (52.295, 3.167)
    assert sigma == pytest.approx(float(torch.tensor(DATA).double().std(correction=0)))


def test_every_printed_number_agrees_with_the_note() -> None:
    for what, computed, note in note_numbers():
        if note in ("not given", "—"):
            continue
        if isinstance(note, float):
            digits = len(f"{note!r}".split("e")[0].split(".")[-1])
            assert computed == pytest.approx(note, rel=10 ** -(digits - 1)), what
        else:
            assert computed == note, what


@pytest.mark.parametrize("overrides", [[], ["sample.n=200", "sample.seed=3"]])
def test_gradient_descent_reaches_the_closed_form(tmp_path: Path, overrides: list[str]) -> None:
    cfg = compose_config("likelihood", [*overrides, "fit.steps=600"], tmp_path)
    likelihood(cfg)
    run = Path(cfg.paths.output_dir)
    metrics = json.loads((run / "metrics.json").read_text())
    assert abs(metrics["mu"] - metrics["mu_mle"]) < 1e-4
    assert abs(metrics["sigma"] - metrics["sigma_mle"]) < 1e-4
    assert metrics["nll"] >= metrics["nll_mle"] - 1e-12  # the MLE minimises the NLL
    x = data_points(cfg)
    assert (metrics["mu_mle"], metrics["sigma_mle"]) == pytest.approx(closed_form_mle(x))
    events = EventAccumulator(str(run / "tensorboard"), {"scalars": 0, "images": 0})
    events.Reload()
    for tag in ("fit/mu", "fit/sigma", "fit/nll", "gap/mu", "gap/sigma", "gap/nll"):
        assert [e.step for e in events.Scalars(tag)] == list(range(cfg.fit.steps)), tag
    assert abs(events.Scalars("gap/mu")[-1].value) < 1e-4
    names = {"probability", "likelihood", "nll_surface", "log"}
    assert {t.removeprefix("figures/") for t in events.Tags()["images"]} == names
    assert {p.stem for p in (run / "figures").glob("*.png")} == names


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["points=[1.5]"], "has 1 point(s): the MLE of σ needs at least two"),
        (["points=[]"], "has 0 point(s)"),
        (["points=[1,inf]"], "holds a value that is not finite"),
        (["points=[1,nan,2]"], "holds a value that is not finite"),
        (["points=[1,abc]"], "must hold numbers only"),
        (["points=5"], "is not a list"),
        (["sample.n=1"], "sample.n=1 is not a whole number >= 2"),
        (["sample.n=10", "sample.sigma=0"], "sample.sigma=0 must be > 0"),
        (["points=[2,2,2]"], "has no spread: σ̂ = 0"),
    ],
)
def test_bad_data_is_refused(tmp_path: Path, overrides: list[str], message: str) -> None:
    cfg = compose_config("likelihood", overrides, tmp_path)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        data_points(cfg)


@pytest.mark.slow
def test_the_command_prints_the_notes_numbers_and_refuses_one_point(tmp_path: Path) -> None:
    run = run_in_process("bigramlab.likelihood", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "-11.800607681274414   -11.800607681274414" in run.stdout
    assert "N(50, 5)" in run.stdout and "N(45, 8)" in run.stdout
    # Each block says which data it is of.
    assert "the note's numbers, computed from its own data" in run.stdout
    assert "the fit of the note's 5 points:" in run.stdout
    (run_dir,) = (tmp_path / "logs" / "likelihood" / "runs").iterdir()
    assert OmegaConf.load(run_dir / ".hydra" / "config.yaml").points == DATA
    bad = run_in_process("bigramlab.likelihood", "data=[1.5]", cwd=tmp_path)
    assert assert_one_error_line(bad, "") == (
        "error: data=[1.5] has 1 point(s): the MLE of σ needs at least two, e.g. data=[1.5,2,3.25]"
    )
    assert len(list((tmp_path / "logs" / "likelihood" / "runs").iterdir())) == 1


def test_the_fit_of_other_data_is_labelled_as_such(tmp_path: Path) -> None:
    cfg = compose_config("likelihood", ["points=[1.5,2,3.25]"], tmp_path)
    assert describe_data(cfg, data_points(cfg)) == "your 3 points (data=[...])"
    drawn = compose_config("likelihood", ["sample.n=100", "sample.seed=3"], tmp_path)
    assert describe_data(drawn, data_points(drawn)) == (
        "100 points drawn from N(50, 2.5) (sample.seed=3)"
    )
