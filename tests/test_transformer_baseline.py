"""scripts/transformer_baseline.py as docs/ngrams.md documents it, on a small names file: it
trains on the lecture split's train words, keeps the weights of the best dev evaluation and
reads test once with them."""

from __future__ import annotations

import json
import math
import string
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import make_words

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "transformer_baseline.py"


def test_transformer_baseline_keeps_the_best_dev_weights_and_writes_its_json(tmp_path: Path):
    names = tmp_path / "names.txt"
    names.write_text("\n".join(make_words(300, seed=3, alphabet=string.ascii_lowercase)) + "\n")
    out = tmp_path / "transformer.json"
    command = [
        sys.executable, str(SCRIPT), "--data", str(names), "--dropout", "0.2", "--json", str(out),
        "--max-steps", "60", "--eval-every", "20", "--n-layer", "1", "--n-embd", "16",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(out.read_text())
    devs = [float(line.split("dev ")[1].split()[0]) for line in result.stdout.splitlines()
            if line.startswith("step ")]  # fmt: skip
    assert len(devs) == 3 and found["steps"] == 60 and found["dropout"] == 0.2
    assert found["dev_nll"] == pytest.approx(min(devs), abs=1e-4)
    assert found["best_step"] == 20 * (devs.index(min(devs)) + 1)
    assert all(math.isfinite(found[k]) for k in ("train_nll", "dev_nll", "test_nll"))
