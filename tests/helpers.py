"""The helpers the tests share: the commands as a user runs them, in a process of their own or in
this one, and the failure policy's one error line; a free loopback port; a run trained in this
process; a run's TensorBoard events and scalars."""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import random
import runpy
import select
import signal
import socket
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import train_and_load


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


def run_in_process(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`python -m <module> <args>` (or `python <module> <args>` for a script's path) in `cwd` as
    run_module gives it, but in this process: its `main()` (the script as __main__) with sys.argv
    set, its output captured, its exit status from SystemExit; what the run sets for its whole
    process put back after it. A run in this process takes the second its work takes, not the
    four of a new process's imports; a test keeps run_module where the process itself is tested
    (signals, a killed run, DDP's processes, a launcher's), and every documented command runs as
    its own process (tests/test_readme.py)."""
    out, err = io.StringIO(), io.StringIO()
    argv, here, path = sys.argv, Path.cwd(), list(sys.path)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # bigramlab.plumbing.cli points Lightning's handlers at the standard output of the moment.
    # (Not a file's: Hydra's logging.config closes every handler, and a closed file handler
    # reopens its file itself.)
    streams = [
        (handler, handler.stream)
        for logger in [root, *map(logging.getLogger, list(logging.Logger.manager.loggerDict))]
        for handler in logger.handlers
        if isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
    ]
    # What a run sets for its whole process (seed_everything, the thread count, the
    # environment its DDP ranks read, trainer.deterministic), put back after it.
    environ, threads = dict(os.environ), torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    status = 0
    GlobalHydra.instance().clear()
    try:
        sys.argv = [module, *args]
        os.chdir(cwd)
        # As `python -m` does: the working directory first on the path (a callback's module).
        sys.path.insert(0, str(cwd) if not module.endswith(".py") else str(Path(module).parent))
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            if module.endswith(".py"):
                runpy.run_path(module, run_name="__main__")
            else:
                importlib.import_module(module).main()
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else int(e.code is not None)
        if isinstance(e.code, str):  # as the interpreter does: the message on standard error
            err.write(e.code + "\n")
    finally:
        sys.argv = argv
        sys.path[:] = path
        for name, loaded in list(sys.modules.items()):  # a module of the working directory
            if Path(getattr(loaded, "__file__", None) or "/").parent == cwd.resolve():
                del sys.modules[name]
        os.chdir(here)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)
        random.setstate(rng[0])
        np.random.set_state(rng[1])
        torch.set_rng_state(rng[2])
        GlobalHydra.instance().clear()
        # Hydra's job logging adds handlers bound to the captured streams: put back the root's.
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        for handler, stream in streams:
            handler.setStream(stream)
    return subprocess.CompletedProcess([module, *args], status, out.getvalue(), err.getvalue())


def assert_one_error_line(result: subprocess.CompletedProcess[str], message: str) -> str:
    """Exit status 2 and a standard error of one line, `error: ...` holding `message`; the line."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    return lines[0]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a server or a process group of a test)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_train(
    train_config: Callable[..., DictConfig], out: Path, *overrides: str
) -> tuple[dict, torch.Tensor]:
    """Train the `train_config` fixture's config with `overrides` in this process, into `out`:
    (its metrics.json, its final W)."""
    return train_and_load(train_config(*overrides), out)


def events(run_dir: Path) -> EventAccumulator:
    """Every event of a run's TensorBoard directory, none sampled away."""
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"),
        size_guidance={"scalars": 0, "images": 0, "histograms": 0, "tensors": 0},
    )
    accumulator.Reload()
    return accumulator


def scalars(run_dir: Path, tag: str) -> dict[int, float]:
    """A run's scalar `tag`, step -> value."""
    return {e.step: e.value for e in events(run_dir).Scalars(tag)}


def events_by_loop(words: list[str], k: int) -> Counter:
    """(context string, next character) of every event, the lecture's way with k `.`s of padding."""
    found: Counter = Counter()
    for w in words:
        chars = ["."] * k + list(w) + ["."]
        for i in range(k, len(chars)):
            found["".join(chars[i - k : i]), chars[i]] += 1
    return found


PRELOADED = r"""
import json, os, runpy, sys, traceback

# What `python -m bigramlab.<command>` spends its first seconds on, done once.
import bigramlab.evaluate, bigramlab.export, bigramlab.likelihood, bigramlab.report
import bigramlab.sample, bigramlab.train

for line in sys.stdin:
    request = json.loads(line)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:  # the command's process
        os.chdir(request["cwd"])
        for fd, name in ((1, "stdout"), (2, "stderr")):
            os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
        sys.path.insert(0, request["cwd"])  # as `python -m` puts it
        sys.argv = [request["module"], *request["args"]]
        # SystemExit and any exception end this process as they end `python -m`'s.
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        sys.exit(0)
    _, status = os.waitpid(pid, 0)
    print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)
"""


class PreloadedPython:
    """`python -m <module> <args>` as a process of its own, forked from a Python that has done the
    commands' imports (torch, Lightning, Hydra: 4 to 6 s of a new process) once: each command gets
    its own process, working directory, standard output and error, exit status and process
    state, as a new `python -m` does, but for the modules already imported."""

    def __init__(self, scratch: Path) -> None:
        self.scratch = scratch
        self.server = subprocess.Popen(
            [sys.executable, "-c", PRELOADED],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            # As a shell starts a command: Ctrl-C not ignored, whatever this process inherited.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.runs = 0

    def run(
        self, module: str, *args: str, cwd: Path, timeout: int = 600
    ) -> subprocess.CompletedProcess[str]:
        self.runs += 1
        out, err = (self.scratch / f"{self.runs}.{name}" for name in ("stdout", "stderr"))
        request = {"module": module, "args": list(args), "cwd": str(cwd)}
        self.server.stdin.write(json.dumps(request | {"stdout": str(out), "stderr": str(err)}))
        self.server.stdin.write("\n")
        self.server.stdin.flush()
        if not select.select([self.server.stdout], [], [], timeout)[0]:
            self.server.kill()
            raise TimeoutError(f"python -m {module} {' '.join(args)}: no end in {timeout} s")
        status = json.loads(self.server.stdout.readline())
        return subprocess.CompletedProcess(
            [module, *args], status, out.read_text(), err.read_text()
        )

    def close(self) -> None:
        self.server.stdin.close()
        self.server.wait(timeout=60)
