"""Optuna sweeps that resume, and that leave their best trial as an experiment file.

Hydra's Optuna sweeper asks for `n_trials` new trials every time it runs, and keeps its study in
memory unless `storage` names a database. bigramlab's hparams_search=optuna stores the study in
SQLite inside the sweep directory (optuna.db), and this sweeper, given a study that already has
trials:

- marks the trials of a killed sweep that never reported (state RUNNING) as FAIL;
- runs only the trials still missing: `n_trials` minus the finished ones (COMPLETE or PRUNED), so
  the same command with `hydra.sweep.dir=<the sweep directory>` resumes a killed sweep and never
  repeats a finished trial; rerun after the end, it runs nothing;
- numbers the new jobs after the study's trials (job k is trial k), and draws new random numbers
  (the sampler's seed would otherwise start again at the first trial's parameters);
- refuses to resume with other settings than the study was made with (its command-line overrides
  and search space, recorded in the study): a trial's value means nothing beside trials of another
  configuration, and the best trial's file would mix them. `hydra.sweeper.n_trials` may change.

Ctrl-C ends the sweep with one line saying where the study is kept and how to resume it.

A `hydra.sweep.dir` that holds something other than an Optuna study (a grid sweep's jobs, a run)
is refused too, before anything is written there.

At the end it writes `experiment/best_trial.yaml` into the sweep directory: the best trial's
parameters over the sweep's own overrides, runnable as

    python -m bigramlab.train --config-dir <sweep directory> experiment=best_trial

It is a Hydra plugin (hydra_plugins.*, found by Hydra's plugin discovery), chosen in
conf/hparams_search/optuna.yaml by `hydra.sweeper._target_`.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from bigramlab.errors import UserError
from bigramlab.writers.atomic import write_atomically

log = logging.getLogger(__name__)
BEST_TRIAL = "best_trial"


class ResumableOptunaSweeper(OptunaSweeper):
    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.hydra_context = hydra_context
        self.config = config

    def sweep(self, arguments: list[str]) -> None:
        import optuna

        # Optuna's own handler writes colour codes even into a file; through the root logger its
        # lines go where Hydra's logging sends the sweep's.
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        impl = self.sweeper
        sweep_dir = Path(self.config.hydra.sweep.dir)
        try:
            if impl.storage is not None:
                check_sweep_dir(sweep_dir)
                sweep_dir.mkdir(parents=True, exist_ok=True)  # the SQLite file lives there
                self._resume(impl, self._settings(arguments))
        except UserError as e:  # the commands' failure policy (plumbing.cli): one line, exit 2
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        interrupted = False

        def ctrl_c(signum: int, frame: Any) -> None:
            nonlocal interrupted
            interrupted = True
            raise KeyboardInterrupt

        # Ctrl-C between trials is a KeyboardInterrupt; inside a trial's training, Lightning's
        # graceful shutdown ends it with SystemExit(1): the flag tells the two from other exits.
        previous = signal.signal(signal.SIGINT, ctrl_c)
        try:
            impl.sweep(arguments)
        except (KeyboardInterrupt, SystemExit):
            if impl.storage is None or not interrupted:
                raise
            where = sweep_dir.absolute()
            print(
                f"error: interrupted: the Optuna study is kept in {where / 'optuna.db'}; "
                f"resume it with the same command and hydra.sweep.dir={where} (the trial "
                "that was running is marked failed and run anew)",
                file=sys.stderr,
            )
            sys.exit(130)
        finally:
            signal.signal(signal.SIGINT, previous)
        write_best_trial(sweep_dir, self.config, self.hydra_context.config_loader)

    def _settings(self, arguments: list[str]) -> dict[str, Any]:
        """What makes the trials of a study comparable: the command's overrides and the search
        space (hydra.sweeper.params)."""
        params = OmegaConf.to_container(self.config.hydra.sweeper.params or {}, resolve=True)
        # Each key's last override, as written: the order they were given in does not matter.
        parsed = OverridesParser.create().parse_overrides(arguments)
        return {
            "overrides": {o.key_or_group: o.input_line for o in parsed},
            "search_space": {str(k): str(v) for k, v in dict(params).items()},  # type: ignore[arg-type]
        }

    def _resume(self, impl: Any, settings: dict[str, Any]) -> None:
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
        except KeyError:  # a new study, made here to record its settings before any trial
            study = optuna.create_study(
                study_name=impl.study_name, storage=impl.storage, directions=impl._get_directions()
            )
        recorded = study.user_attrs.get("settings")
        if recorded is None:
            if not study.get_trials(deepcopy=False):
                study.set_user_attr("settings", settings)
            else:
                log.warning(f"study {impl.study_name} records no settings: they are not checked")
        elif recorded != settings:
            self._refuse_other_settings(recorded, settings)
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            log.warning(f"trial {trial.number} never reported (the sweep was stopped): failed")
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        to_run = max(impl.n_trials - finished, 0)
        if to_run:
            log.info(
                f"resuming study {impl.study_name}: {finished} trials of "
                f"hydra.sweeper.n_trials={impl.n_trials} finished, running {to_run}"
            )
        else:
            log.info(
                f"study {impl.study_name} has {finished} finished trials, "
                f"hydra.sweeper.n_trials={impl.n_trials}: nothing to run (raise "
                f"hydra.sweeper.n_trials above {finished} for more)"
            )
        impl.n_trials = to_run
        impl.job_idx = len(trials)
        # Hydra's sweeper sets job_idx to 0 in setup, not in sweep: this numbering holds.
        if hasattr(impl.sampler, "reseed_rng"):
            impl.sampler.reseed_rng()

    def _refuse_other_settings(self, recorded: dict[str, Any], now: dict[str, Any]) -> None:
        sweep_dir = self.config.hydra.sweep.dir
        then_args, now_args = recorded["overrides"], now["overrides"]
        changed = [
            f"was {then_args.get(key, f'no {key}')}, is {now_args.get(key, f'no {key}')}"
            for key in sorted(then_args.keys() | now_args.keys())
            if then_args.get(key) != now_args.get(key)
        ]
        if recorded["search_space"] != now["search_space"]:
            changed.append("hydra.sweeper.params")
        raise UserError(
            f"the Optuna study in {sweep_dir} was run with other settings ({'; '.join(changed)}): "
            f"resume it with its own, python -m bigramlab.train {' '.join(then_args.values())} "
            f"hydra.sweep.dir={sweep_dir}, or leave hydra.sweep.dir out to start a new study"
        )


def check_sweep_dir(sweep_dir: Path) -> None:
    """Refuse a sweep directory that holds anything but an Optuna study."""
    if not sweep_dir.is_dir() or not any(sweep_dir.iterdir()):
        return
    if (sweep_dir / "optuna.db").is_file():
        return
    if (sweep_dir / "multirun.yaml").is_file():
        what = "the jobs of another multirun (a grid sweep)"
    elif (sweep_dir / ".hydra").is_dir():
        what = "a single run"
    else:
        what = "files of its own"
    raise UserError(
        f"hydra.sweep.dir={sweep_dir} holds {what}, not an Optuna study (no optuna.db): leave "
        "hydra.sweep.dir out to start a new study, or name the directory of the study to resume"
    )


def write_best_trial(sweep_dir: Path, config: DictConfig, loader: Any) -> None:
    """experiment/best_trial.yaml from optimization_results.yaml (the sweeper's best
    parameters) and the sweep's command-line overrides (hparams_search and hydra.* left out);
    `loader` is Hydra's config loader, which knows the config groups."""
    results_path = sweep_dir / "optimization_results.yaml"
    if not results_path.is_file():
        return
    results = OmegaConf.load(results_path)
    if "best_params" not in results:  # several objectives: a Pareto front, no one best
        return
    best: dict[str, Any] = dict(results.best_params)
    parser = OverridesParser.create()
    overrides = [
        o
        for o in parser.parse_overrides(list(config.hydra.overrides.task))
        if o.key_or_group not in best
        and o.key_or_group != "hparams_search"
        and not o.key_or_group.startswith(("hydra.", "hydra/"))
        and not o.is_delete()
        and not o.is_sweep_override()
    ]
    settings = [(o.key_or_group, o.value()) for o in overrides] + list(best.items())
    defaults: list[Any] = []
    body = OmegaConf.create({})
    for key, value in settings:
        if key == "experiment":  # the experiment the sweep ran on: included whole
            defaults.insert(0, f"/experiment/{value}")
        elif loader.get_group_options(key):
            defaults.append({f"override /{key}": value})
        else:
            OmegaConf.update(body, key, value, force_add=True)
    config = OmegaConf.create({"defaults": defaults} if defaults else {})
    config = OmegaConf.merge(config, body)
    directory = sweep_dir / "experiment"
    directory.mkdir(exist_ok=True)
    header = (
        "# @package _global_\n"
        f"# The best trial of the Optuna study in {sweep_dir}: "
        f"{config.get('optimized_metric', 'objective')} = {results.best_value}\n"
        f"# python -m bigramlab.train --config-dir {sweep_dir} experiment={BEST_TRIAL}\n"
    )
    path = directory / f"{BEST_TRIAL}.yaml"
    text = header + OmegaConf.to_yaml(config)
    write_atomically(path, lambda tmp: tmp.write_text(text))
    log.info(f"best trial's configuration: {path}")
