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
  (the sampler's seed would otherwise start again at the first trial's parameters).

At the end it writes `experiment/best_trial.yaml` into the sweep directory: the best trial's
parameters over the sweep's own overrides, runnable as

    python -m bigramlab.train --config-dir <sweep directory> experiment=best_trial

It is a Hydra plugin (hydra_plugins.*, found by Hydra's plugin discovery), chosen in
conf/hparams_search/optuna.yaml by `hydra.sweeper._target_`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import HydraContext, TaskFunction
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf

from bigramlab.atomic import write_atomically

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
        impl = self.sweeper
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)  # the SQLite file lives there
        if impl.storage is not None:
            self._resume(impl)
        impl.sweep(arguments)
        self._write_best_trial(sweep_dir)

    def _resume(self, impl: Any) -> None:
        import optuna
        from optuna.trial import TrialState

        try:
            study = optuna.load_study(study_name=impl.study_name, storage=impl.storage)
        except KeyError:  # no such study yet: a new sweep
            return
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study.tell(trial.number, state=TrialState.FAIL)
            log.warning(f"trial {trial.number} never reported (the sweep was stopped): failed")
        trials = study.get_trials(deepcopy=False)
        if not trials:
            return
        finished = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        log.info(
            f"resuming study {impl.study_name}: {finished} of {impl.n_trials} trials finished, "
            f"running {max(impl.n_trials - finished, 0)}"
        )
        impl.n_trials = max(impl.n_trials - finished, 0)
        impl.job_idx = len(trials)
        # Hydra's sweeper sets job_idx to 0 in setup, not in sweep: this numbering holds.
        if hasattr(impl.sampler, "reseed_rng"):
            impl.sampler.reseed_rng()

    def _write_best_trial(self, sweep_dir: Path) -> None:
        """experiment/best_trial.yaml from optimization_results.yaml (the sweeper's best
        parameters) and the sweep's command-line overrides (hparams_search and hydra.* left out)."""
        results_path = sweep_dir / "optimization_results.yaml"
        if not results_path.is_file():
            return
        results = OmegaConf.load(results_path)
        if "best_params" not in results:  # several objectives: a Pareto front, no one best
            return
        best: dict[str, Any] = dict(results.best_params)
        parser = OverridesParser.create()
        loader = self.hydra_context.config_loader
        overrides = [
            o
            for o in parser.parse_overrides(list(self.config.hydra.overrides.task))
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
            f"{self.config.get('optimized_metric', 'objective')} = {results.best_value}\n"
            f"# python -m bigramlab.train --config-dir {sweep_dir} experiment={BEST_TRIAL}\n"
        )
        path = directory / f"{BEST_TRIAL}.yaml"
        text = header + OmegaConf.to_yaml(config)
        write_atomically(path, lambda tmp: tmp.write_text(text))
        log.info(f"best trial's configuration: {path}")
