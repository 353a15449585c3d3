"""NLL and perplexity of a trained model on a data set's splits, beside the counted model's
(additive or Kneser–Ney, from the same split's train words); or on given words.

python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt
python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt 'words=[emma,zzz]'

At the checkpoint's context length. The data set, its split and the counted model are the run's
(recorded in the checkpoint) unless the command line sets them; the output says which is which.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from bigramlab.counting.ngrams import count_ngrams
from bigramlab.data.corpora import Corpus
from bigramlab.data.vocab import SPLITS, Vocab
from bigramlab.errors import UserError
from bigramlab.keys import context_keys, context_tokens
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.lm import LanguageModel, word_nlls
from bigramlab.models.nll import mean_nll, seen_counts
from bigramlab.models.smoothing import counted_model
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import (
    CONFIG_DIR,
    COUNTED_KEYS,
    SPLIT_KEYS,
    checkpoint_path,
    given_settings,
    recorded_run_settings,
    run_data_settings,
    smoothing_name,
    validate_alpha,
    validate_data,
)


class SplitRow(NamedTuple):
    """One split of a data set scored: its words and events (tokens predicted), the checkpoint's
    and the counted model's mean NLL (None where the split is empty), and the events whose
    context the checkpoint's model predicts uniformly, having learned nothing of it (a onehot W
    without a row for it)."""

    split: str
    words: int
    events: int
    nll: float | None
    counted_nll: float | None
    rowless: int


def split_rows(
    model: LanguageModel,
    corpus: Corpus,
    split: Sequence[float],
    split_seed: int,
    split_rule: str = "randperm",
    alpha: float = 1.0,
    smoothing: str = "additive",
) -> list[SplitRow]:
    """The checkpoint and the counted model on train, val and test, at the checkpoint's context.

    The corpus is counted in pieces, as for training (memory grows with its distinct n-grams, not
    with it); its contexts and counts, over its own vocabulary, are moved to the checkpoint's,
    which must hold every character. The counted model (counted.smoothing, counted.alpha) is that of
    training: over the data's own vocabulary.
    """
    context, vocab = model.context, Vocab(model.itos)
    counted = count_ngrams(corpus, context, split, split_seed, split_rule)
    counts = counted.counts
    reference = counted_model(
        counts, alpha, smoothing, counted.contexts, context, itos=counted.vocab.itos
    )
    counted_nll = reference.nll  # a counted model is scored on its counts as it is fitted
    if error := vocab.missing(counted.vocab.itos, corpus.name):
        raise error
    ids = torch.tensor([vocab.stoi[ch] for ch in counted.vocab.itos])
    tokens = ids[context_tokens(counted.contexts, context, len(counted.vocab))]
    contexts = context_keys(tokens, len(vocab))
    log_probs = model.log_probs(contexts)
    rowless = model.uniform_contexts(contexts)
    rows = []
    for name in SPLITS:
        # The data's tokens renumbered as the checkpoint's; the counts stay sparse.
        seen, token, n = seen_counts(counts[name])
        N = torch.sparse_coo_tensor(
            torch.stack([seen, ids[token]]), n, (len(contexts), len(vocab)), check_invariants=True
        ).coalesce()
        rows.append(
            SplitRow(
                name,
                counted.n_words[name],
                int(N.sum()),
                mean_nll(log_probs, N),
                counted_nll.get(name),
                int(n[rowless[seen]].sum()),
            )
        )
    return rows


def _nll(value: float | None) -> str:
    return "null" if value is None else f"{value:.6f}"


def _ppl(value: float | None) -> str:
    return "null" if value is None else f"{math.exp(value):.4f}"


def dataset_name(choice: str | None, settings: dict[str, Any]) -> str:
    """A data set as the command line names it: `dataset=names`, `dataset=text_file
    dataset.path=/data/w.txt dataset.lowercase=true` (the settings that are not the option's
    defaults, where the option is known)."""
    if choice is None:
        return f"a data set of class {settings.get('dataset._target_')}"
    shown = [f"dataset={choice}"]
    defaults = _option_defaults(choice)
    for key, value in settings.items():
        name = key.partition(".")[2]
        shown_here = key.startswith("dataset.") and name not in ("_target_", "cache_dir")
        if shown_here and (name not in defaults or defaults[name] != value):
            shown.append(f"{key}={value}")
    return " ".join(shown)


def _option_defaults(choice: str) -> dict[str, Any]:
    path = Path(CONFIG_DIR) / "dataset" / f"{choice}.yaml"
    return dict(OmegaConf.to_container(OmegaConf.load(path))) if path.is_file() else {}


def _show_setting(value: Any) -> str:
    return f"[{','.join(str(v) for v in value)}]" if isinstance(value, list) else str(value)


def take_run_settings(cfg: DictConfig, run: dict[str, Any] | None, source: str) -> list[str]:
    """Set in `cfg` the run's data settings (`run`, run_data_settings of the run that made the
    checkpoint, found in `source`) that the command line does not set; the lines that say which
    data the model is scored on and where each setting came from.

    The run's data set unless `dataset=` names another option; of the same option, every
    `dataset.<key>` not given is the run's (its file, its checksum). The split (data.split,
    split_seed, split_rule) and the counted model (counted.smoothing, alpha) are the run's unless
    given, on the run's data or on another.
    """
    given = given_settings()
    choice = HydraConfig.get().runtime.choices.get("dataset")
    if run is None:
        return [
            f"note: {source} records no data settings of its run: scored on "
            f"{dataset_name(choice, run_data_settings(cfg, choice))} and the split and counted "
            "model set here (the defaults, where not given)"
        ]
    lines = []
    with open_dict(cfg):
        if run["dataset"] is not None and (choice is None or "dataset" not in given):
            defaults = Path(CONFIG_DIR) / "dataset" / f"{run['dataset']}.yaml"
            if not defaults.is_file():
                raise UserError(
                    f"{source} was trained on dataset={run['dataset']}, which this version of "
                    "bigramlab does not have: name the data to score, e.g. dataset=text_file "
                    "dataset.path=<its file>"
                )
            cfg.dataset = OmegaConf.load(defaults)
            choice = run["dataset"]
        if choice == run["dataset"]:
            for key, value in run.items():
                name = key.partition(".")[2]
                if key.startswith("dataset.") and name != "_target_" and key not in given:
                    cfg.dataset[name] = value
        for key in (*SPLIT_KEYS, *COUNTED_KEYS):
            if key in given:
                value = OmegaConf.select(cfg, key)
                value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
                # Kneser–Ney has no α: a run that used it used none.
                unused = key == "counted.alpha" and run.get("counted.smoothing") == "kneser_ney"
                if value != run.get(key) and run.get(key) is not None and not unused:
                    lines.append(
                        f"{key}={_show_setting(value)}: overridden; the run used "
                        f"{_show_setting(run[key])}"
                    )
            elif run.get(key) is not None:
                OmegaConf.update(cfg, key, run[key])
    now = run_data_settings(cfg, choice)
    data = dataset_name(choice, now)
    split_given = any(key in given and now[key] != run.get(key) for key in SPLIT_KEYS)
    split = " ".join(f"{key}={_show_setting(now[key])}" for key in SPLIT_KEYS)
    same_data = all(
        now.get(key) == run.get(key)
        for key in now.keys() | run.keys()
        if key.startswith("dataset.") or (key == "dataset" and run["dataset"] is not None)
    )
    if not same_data:
        lines[:0] = [
            f"data: {data}: not the run's data (it trained on "
            f"{dataset_name(run['dataset'], run)}); every split is held-out to this model",
            f"split: {split}" + ("" if split_given else f", as the run's, from {source}"),
        ]
    elif split_given:
        lines.insert(0, f"data: {data}, the run's data, split as given: {split}")
    else:
        lines.insert(0, f"data: {data}, split as the run's: {split}, from {source}")
    counted = smoothing_name(cfg)
    if not any(key in given for key in COUNTED_KEYS):
        lines.append(f"counted: {counted}, from {source}")
    return lines


def evaluate(cfg: DictConfig) -> None:
    refuse_model_settings()
    checkpoint = load_checkpoint(checkpoint_path(cfg))
    model = checkpoint.model
    kind = f"{len(model.itos)} tokens, {model.describe()}"
    if cfg.words is not None:
        if not isinstance(cfg.words, ListConfig):
            # words=emma is a string, which would be scored letter by letter.
            raise UserError(f"words={cfg.words!r} is not a list: write words=[{cfg.words}]")
        if len(cfg.words) == 0:
            raise UserError("words=[] holds no word: give at least one, e.g. words=[emma]")
        if any(str(w) == "" for w in cfg.words):
            raise UserError(
                f"words={list(cfg.words)} holds an empty word, which no data set has (blank "
                "lines are skipped): remove it"
            )
        rows = word_nlls(model, [str(w) for w in cfg.words])
        print(f"checkpoint {cfg.ckpt} ({kind})")
        print(f"{'word':<20} {'events':>8} {'nll':>10} {'ppl':>10}")
        for word, n, value in rows:
            print(f"{word:<20} {n:>8} {value:>10.6f} {_ppl(value):>10}")
        return
    run = recorded_run_settings(cfg.ckpt, checkpoint.run_settings)
    source = "the checkpoint" if checkpoint.run_settings else "the run's .hydra/config.yaml"
    if checkpoint.run_settings is None and run is None:
        source = f"checkpoint {cfg.ckpt}"
    settings_lines = take_run_settings(cfg, run, source)
    validate_data(cfg)
    validate_alpha(cfg)
    smoothing = cfg.counted.smoothing
    rows = split_rows(
        model,
        instantiate(cfg.dataset),
        cfg.data.split,
        cfg.data.split_seed,
        cfg.data.split_rule,
        float(cfg.counted.alpha),
        smoothing,
    )
    print(f"checkpoint {cfg.ckpt} ({kind})")
    print("\n".join(settings_lines))
    print(f"counted_nll: the counted model ({smoothing_name(cfg)}) fitted on the train split above")
    print(
        f"{'split':<6} {'words':>8} {'events':>10} {'nll':>10} {'ppl':>10} "
        f"{'counted_nll':>10} {'counted_ppl':>10}"
    )
    impossible = False
    for row in rows:
        counted_shown = _nll(row.counted_nll)
        if row.counted_nll is not None and math.isinf(row.counted_nll):
            counted_shown, impossible = "inf*", True
        print(
            f"{row.split:<6} {row.words:>8} {row.events:>10} {_nll(row.nll):>10} "
            f"{_ppl(row.nll):>10} {counted_shown:>10} {_ppl(row.counted_nll):>10}"
        )
    if impossible:
        print(
            "* the counted model gives probability 0 to an event of this split that the train "
            "split does not have (counted.alpha=0): set counted.alpha above 0 to smooth it"
        )
    for row in rows:
        if row.rowless:
            print(
                f"{row.split}: {row.rowless} of {row.events} events have a context that "
                f"{model.describe()} has learned nothing of (never in its training data): it "
                "predicts them uniformly; model.features=interpolated or skipgram backs off to "
                "shorter contexts"
            )


def refuse_model_settings() -> None:
    """evaluate scores the checkpoint's model as it was trained: a `model.*` setting (its context,
    features) would be ignored, so it is refused."""
    for key, value in given_settings().items():
        if key.partition(".")[0] == "model":
            raise UserError(
                f"{key}={value} is not used by evaluate (the checkpoint's model is scored as "
                f"trained, at its own context and features): remove {key}"
            )


main = entry_point("evaluate", evaluate)

if __name__ == "__main__":
    main()
    exit_now()
