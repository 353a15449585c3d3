"""The layer contract (pyproject.toml's [tool.importlinter]): every subpackage imports only the
layers below it, checked by import-linter over the source as it is, and shown to fail on a copy
of it with one upward import added."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(package_root: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` on the contract of pyproject.toml, for the bigramlab found in package_root."""
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_import_downward_only() -> None:
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout[-3000:]
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "src" / "bigramlab", tmp_path / "bigramlab")
    nll = tmp_path / "bigramlab" / "models" / "nll.py"
    nll.write_text(nll.read_text() + "\nimport bigramlab.training.module  # upward\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout[-3000:]
    assert "BROKEN" in result.stdout
    assert "bigramlab.models.nll -> bigramlab.training.module" in result.stdout


def test_no_class_in_src_is_over_150_lines() -> None:
    """A class that grows past 150 lines does two jobs: split it (ComparisonReport and its
    Snapshots are the example)."""
    long = []
    for path in sorted((ROOT / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > 150:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert long == []


def test_sample_evaluate_and_export_import_neither_lightning_nor_matplotlib() -> None:
    """They read a checkpoint into the model alone: their start stays a second or two, not the
    four of Lightning's import."""
    code = (
        "import sys, bigramlab.sample, bigramlab.evaluate, bigramlab.export; "
        "print(sorted(m for m in ('lightning', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert result.stdout.strip() == "[]"
