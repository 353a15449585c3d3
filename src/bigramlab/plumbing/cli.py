"""What every command (train, sample, evaluate) shares: Hydra's entry point with conf/, and one
failure policy.

A UserError (a bad value, a missing file, a checkpoint that is not one, a diverged run) ends a
single run with one `error: ...` line on stderr and exit status 2, and removes the run directory
Hydra made for it if nothing of the run's own is in it. Inside a multirun it ends only that job:
its metrics.json says why, its objective is inf, and the sweep goes on. Hydra's own errors (an
unknown key or option, a malformed override) are Hydra's: its message and exit status 1.
"""

from __future__ import annotations

import atexit
import difflib
import inspect
import logging
import math
import os
import re
import shutil
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from bigramlab.errors import Diverged, UserError

# Importing plumbing.config registers conf/'s resolvers.
from bigramlab.plumbing.config import CONFIG_DIR, resumes_in_place
from bigramlab.training.results import failed_metrics, write_metrics

log = logging.getLogger("bigramlab")

# Keys renamed since they were documented: old -> new. Naming an old one is an error naming the new.
RENAMED = {
    "callbacks.divergence.max_loss": "callbacks.step_losses.max_loss",
    "callbacks.divergence": "callbacks.step_losses",
    "mle.alpha": "counted.alpha",
    "mle.smoothing": "counted.smoothing",
    "mle": "counted",
    "model.impl": "model.loss_form",
}
# Options of a config group renamed since they were documented: group=old -> group=new.
RENAMED_OPTIONS = {"model=bigram": "model=learned"}


def quiet_dependencies() -> None:
    """Users should see bigramlab's output, not its dependencies' chatter."""
    # Lightning 2.6 calls a torch.utils._pytree API that newer torch deprecates; nothing a user of
    # this pipeline can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(
        lambda record: not record.getMessage().startswith("💡 Tip")
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # Optuna's storage migrations
    # "Terminating process N via signal SIGTERM": the other ranks of a run one rank failed, whose
    # error is what the user sees.
    logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)
    # Lightning's own handler writes its notes ("GPU available: ...") to standard error; they are
    # information, so to standard output: an error raised inside fit (the data are read there) is
    # then the one line on standard error.
    for name in ("lightning.pytorch", "lightning.fabric"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
                handler.setStream(sys.stdout)


def renamed_key_error(overrides: list[str], config_name: str = "train") -> UserError | None:
    """The error for the first command-line override that names a renamed key, or None. Keys and
    options of train's model group are train's alone: another command has none to point to."""
    for override in overrides:
        key = override.lstrip("+~").partition("=")[0]
        if config_name != "train" and key.partition(".")[0] == "model":
            continue
        if key in RENAMED:
            return UserError(f"{key} was renamed: use {RENAMED[key]}")
        if override in RENAMED_OPTIONS and config_name == "train":
            return UserError(f"{override} was renamed: use {RENAMED_OPTIONS[override]}")
    return None


def launcher_error(overrides: list[str]) -> UserError | None:
    """The error for a SLURM launcher on a machine without SLURM (submitit would fail in the
    middle of the sweep, after making its directory), or None."""
    for override in overrides:
        key, _, value = override.lstrip("+").partition("=")
        if key == "hydra/launcher" and "slurm" in value and shutil.which("srun") is None:
            return UserError(
                f"hydra/launcher={value} submits the jobs to SLURM, and this machine has no srun: "
                "run the command where SLURM is (a cluster's login node), or use "
                "hydra/launcher=submitit_local or hydra/launcher=joblib here"
            )
    return None


def instantiation_error(e: InstantiationException, cfg: DictConfig) -> UserError | None:
    """A UserError for a config that Hydra could not instantiate because of its values (a key the
    target does not take, a value of the wrong kind); None for anything else."""
    found = re.search(r"full_key: ([\w.]+)", str(e))
    return config_error(e.__cause__, found.group(1) if found else "the config", cfg)


def config_error(cause: BaseException | None, node: str, cfg: DictConfig) -> UserError | None:
    """A UserError for `cause`, raised when the config node `node` was built or called: a key its
    target does not take (named as the user wrote it, with the closest the target does take), or
    a value of the wrong kind; None for anything else."""
    if isinstance(cause, UserError):  # a component's own check of its values
        return cause
    unexpected = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if isinstance(cause, TypeError) and unexpected:
        name = unexpected.group(1)
        # The node the user wrote the key in: `optim` rather than `model.optimizer: ${optim}`.
        where = next(
            (
                group
                for group, sub in cfg.items()
                if isinstance(sub, DictConfig) and name in sub and "_target_" in sub
            ),
            node,
        )
        target = OmegaConf.select(cfg, f"{where}._target_")
        hint = ""
        try:
            accepted = list(inspect.signature(get_object(target)).parameters)
            close = difflib.get_close_matches(name, accepted, n=1)
            hint = f" (did you mean {where}.{close[0]}?)" if close else ""
        except (ImportError, ValueError, TypeError, AttributeError):
            pass
        return UserError(
            f"{where}.{name} is not a setting of {target}: remove +{where}.{name}, "
            f"or check its spelling{hint}"
        )
    if isinstance(cause, TypeError | ValueError):
        return UserError(f"{node}: {cause}: check the values under {node}")
    return None


def _remove_unused_outputs(run_dir: Path, config_subdir: str) -> None:
    """Remove what Hydra (and the logger) made for a run that failed before writing anything of its
    own (a checkpoint, metrics.json, figures), so that nothing is left behind to be mistaken for a
    run: the run directory, or, for a resumed run (which goes on in the run directory it resumes),
    its config record `.hydra/resume_<time>`."""
    if config_subdir != ".hydra":
        shutil.rmtree(run_dir / config_subdir, ignore_errors=True)
        return
    # TensorBoard's directory too: Lightning opens its writer when fit starts, before the data
    # are read (in every process), so a data error leaves it holding only its file header.
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log", "tensorboard"}
    if not run_dir.is_dir() or any(p.name not in hydra_files for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir)
    # And the folders Hydra made above it (logs/train/runs/), where nothing else is in them.
    cwd = Path.cwd().absolute()
    for parent in run_dir.absolute().parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


class SweepDirectory(Callback):
    """Ends a multirun by printing its sweep directory, as a single run ends with its run
    directory: the directory that the sweep report and TensorBoard take."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).absolute()
        lines = [f"sweep directory: {sweep_dir}"]
        if config.get("task_name") == "train":
            lines.append(f"  python -m bigramlab.report {sweep_dir}")
        lines.append(f"  tensorboard --logdir {sweep_dir}")
        print("\n".join(lines), flush=True)


# What a run directory holds once a run has written into it.
RUN_FILES = (".hydra", "checkpoints", "metrics.json", "tensorboard")


class FreshOutput(Callback):
    """Refuses, before Hydra writes anything, a run into a directory that holds a run
    (`hydra.run.dir=<an existing run>`) unless it is that run's resume (`ckpt_path=<that
    run>/checkpoints/last.ckpt`), and a multirun into a sweep directory that holds anything (the
    resumable Optuna sweeper checks its own: its directory holds the study it resumes). Nothing of
    the old run or sweep is replaced or mixed with the new one."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        if _rank() != 0:  # Lightning's ddp starts the other ranks in rank 0's run directory
            return
        run_dir = Path(str(config.hydra.run.dir)).absolute()
        ckpt_path = config.get("ckpt_path")
        if resumes_in_place(ckpt_path) and Path(ckpt_path).absolute().parent.parent == run_dir:
            return
        held = [name for name in RUN_FILES if (run_dir / name).exists()]
        if held:
            resume = run_dir / "checkpoints" / "last.ckpt"
            fix = f", or resume it with ckpt_path={resume}" if resume.is_file() else ""
            _refuse(
                f"hydra.run.dir={run_dir} holds a run ({', '.join(held)}): choose another "
                f"hydra.run.dir (or leave it out for a new one){fix}"
            )

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if str(config.hydra.sweeper.get("_target_", "")).endswith("ResumableOptunaSweeper"):
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
        if sweep_dir.is_dir() and any(sweep_dir.iterdir()):
            what = "a sweep" if (sweep_dir / "multirun.yaml").is_file() else "files"
            _refuse(
                f"hydra.sweep.dir={sweep_dir} holds {what} already: choose another "
                "hydra.sweep.dir (or leave it out for a new one); new jobs would be mixed with "
                "its own"
            )


def _refuse(message: str) -> None:
    """The failure policy's one line and exit status 2, from a Hydra callback (which runs before
    the task, outside run_task)."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _rank() -> int:
    """This process's rank as Lightning's launchers set it (0 outside DDP), read from the
    environment as Lightning's rank_zero_only does, without importing Lightning."""
    for name in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if name in os.environ:
            return int(os.environ[name])
    return 0


def run_task(task: Callable[[DictConfig], float | None], cfg: DictConfig) -> float | None:
    """Run `task(cfg)` under the failure policy of the module docstring."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir) if hydra_cfg.output_subdir is not None else None
    try:
        try:
            return task(cfg)
        except BrokenPipeError:
            # The reader of the output has gone (`... | head`): stop quietly, as `cat` does, with
            # no traceback; what is left to print has nowhere to go.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(1)
        except InstantiationException as e:
            error = instantiation_error(e, cfg)
            if error is None:
                raise
            raise error from None
    except UserError as e:
        if hydra_cfg.mode == RunMode.MULTIRUN:
            log.error(f"job failed: {e}")
            if run_dir is not None and not (run_dir / "metrics.json").exists():
                write_metrics(run_dir, failed_metrics("failed", str(e), None))
            if "optimized_metric" in cfg:
                log.info(f"objective {cfg.optimized_metric} = inf")
            return math.inf
        if _rank() == 0:  # under `ddp` every rank runs this; one says it
            print(f"error: {e}", file=sys.stderr)
        if run_dir is not None and not isinstance(e, Diverged):
            _remove_unused_outputs(run_dir, hydra_cfg.output_subdir)
        sys.exit(2)


def exit_now() -> None:
    """End a command that has finished, at once, with status 0.

    Python's own shutdown would free every object of torch, Lightning and matplotlib one by one
    (docs/benchmark.md has its cost), and nothing is left to do by then. What
    shutdown does that matters is done here first: the exit handlers (logging's, which flushes the
    run's log file) and flushing the standard streams. Where threads other than daemons still run
    (a process pool's manager thread, after a joblib sweep), Python's shutdown joins them before
    the exit handlers, which may wait for them: this returns and leaves the exit to Python. For
    `python -m bigramlab.<command>` only, not for a `main()` called from other code.
    """
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon for t in threading.enumerate()):
        return
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader has gone (`... | head`): what is left goes nowhere
        sys.stderr.flush()
        os._exit(1)
    sys.stderr.flush()
    os._exit(0)


def entry_point(config_name: str, task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
    """`main()` for `python -m bigramlab.<command>`: conf/<config_name>.yaml composed by Hydra
    from the command line, then `task(cfg)` under the failure policy."""

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)
    def hydra_main(cfg: DictConfig) -> Any:
        quiet_dependencies()  # again in each process a launcher starts
        return run_task(task, cfg)

    def main() -> Any:
        quiet_dependencies()
        args = sys.argv[1:]
        if error := renamed_key_error(args, config_name) or launcher_error(args):
            print(f"error: {error}", file=sys.stderr)
            sys.exit(2)
        return hydra_main()

    return main
