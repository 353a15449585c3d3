"""The commands as a user runs them, each in a process of its own, and the failure policy's one
error line: the helpers every end-to-end test uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_module(
    module: str, *args: str, cwd: Path, timeout: int = 600
) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` in `cwd`, with this interpreter; its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_error_line(result: subprocess.CompletedProcess[str], message: str) -> str:
    """Exit status 2 and a standard error of one line, `error: ...` holding `message`; the line."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    return lines[0]
