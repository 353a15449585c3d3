"""A model in ARPA format: `python -m bigramlab.export ckpt=<run>/checkpoints/last.ckpt out=m.arpa`
or `python -m bigramlab.export source=counted out=m.arpa` (the counted model of the data, at
model.context, smoothed as counted.*).

Every model with an ARPA listing (bigramlab.models.lm.LanguageModel.arpa_listing), at any context
length: learned (onehot or interpolated) and counted (additive or Kneser–Ney); any other model
refuses through the same method, in one line that says why. A skipgram model is refused: ARPA's
backoff drops the oldest tokens of a history, so it cannot give a context never listed the weight
of a skip (which hides the newest); listing every history a skip reaches is V times its rows,
each with V targets (tens of millions of lines for names.txt at k = 6). bigramlab.arpa writes the
text so that
KenLM's probability of every word is bigramlab's: each model lists the distributions KenLM asks
for, and where KenLM backs off, the shorter histories give the model's own value.

Tokens: one character a token; the boundary `.` is `<s>` as a context and `</s>` as a target; a
character ARPA cannot hold (whitespace: ARPA separates tokens by it) is written `<U+XXXX>`, its
code point in hex (a space is `<U+0020>`); give KenLM the same stand-ins. `<unk>` (a character
outside the vocabulary) is a unigram of probability 1/(V + 1), V the vocabulary with `.`; `<s>`
has -99, as in KenLM's files. A probability 0 (an unsmoothed counted model's unseen n-gram) is
written as -99 (log10).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from bigramlab.arpa import arpa_text
from bigramlab.counting.ngrams import count_ngrams
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.lm import LanguageModel
from bigramlab.models.smoothing import counted_model
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import (
    given_settings,
    validate_alpha,
    validate_data,
    whole_number,
)
from bigramlab.writers.atomic import write_atomically

KENLM_DEFAULT_MAX_ORDER = 6  # KenLM's KENLM_MAX_ORDER unless built with another


def output_path(cfg: DictConfig) -> Path:
    """`out`, checked: its directory exists, and it is not there unless overwrite=true."""
    if OmegaConf.is_missing(cfg, "out") or cfg.out is None:
        raise UserError("no output file given: add out=<file>.arpa, e.g. out=model.arpa")
    out = Path(str(cfg.out))
    if not out.parent.is_dir():
        raise UserError(f"out={out}: directory {out.parent} does not exist: create it first")
    if out.is_dir():
        raise UserError(
            f"out={out} is a directory: give a file name, e.g. out={out / 'model.arpa'}"
        )
    if out.exists() and not cfg.overwrite:
        raise UserError(f"out={out} exists: add overwrite=true to replace it")
    return out


def model_to_export(cfg: DictConfig) -> tuple[LanguageModel, str]:
    """The model the config names, and what it is in words: a checkpoint's (source=checkpoint)
    or the counted model of a data set (source=counted)."""
    given = given_settings()
    if cfg.source == "checkpoint":
        if cfg.ckpt is None:
            raise UserError(
                "no checkpoint given: add ckpt=<run dir>/checkpoints/last.ckpt, "
                "or source=counted for the counted model of the data"
            )
        unused = [
            k for k in given if k.partition(".")[0] in ("dataset", "data", "model", "counted")
        ]
        if unused:
            raise UserError(
                f"{unused[0]}={given[unused[0]]} is not used when a checkpoint is exported (its "
                "model is written as trained): remove it, or use source=counted for the counted "
                "model of a data set"
            )
        model = load_checkpoint(cfg.ckpt).model
        return model, f"{cfg.ckpt} ({model.describe()})"
    if cfg.source != "counted":
        raise UserError(f"source={cfg.source!r} is unknown: choose checkpoint or counted")
    if "ckpt" in given:
        raise UserError(
            f"ckpt={given['ckpt']} is not used with source=counted (the counted model is fitted "
            "on the data set): remove ckpt, or use source=checkpoint to export it"
        )
    whole_number(cfg, "model.context", 1, "model.context=3 (tokens of context; 1: the bigram)")
    validate_data(cfg)
    validate_alpha(cfg)
    context = cfg.model.context
    counted = count_ngrams(
        instantiate(cfg.dataset), context, cfg.data.split, cfg.data.split_seed, cfg.data.split_rule
    )
    model = counted_model(
        counted.counts,
        float(cfg.counted.alpha),
        cfg.counted.smoothing,
        counted.contexts,
        context,
        itos=counted.vocab.itos,
    )
    dataset = HydraConfig.get().runtime.choices.get("dataset", "?")
    if "path" in cfg.dataset:
        dataset += f" dataset.path={cfg.dataset.path}"
    what = (
        f"the counted model of dataset={dataset} ({cfg.data.split_rule} split, train words; "
        f"model.context={context} {model.describe()})"
    )
    return model, what


def export(cfg: DictConfig) -> None:
    out = output_path(cfg)
    model, what = model_to_export(cfg)
    listing = model.arpa_listing()  # a model without one refuses here, before anything is written
    text = arpa_text(model.itos, listing)
    V, n_grams = model.vocab_size, listing.context + 1
    write_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {out} ({out.stat().st_size:,} bytes): {what}, {V} tokens")
    if n_grams > KENLM_DEFAULT_MAX_ORDER:
        print(
            f"note: these are {n_grams}-grams; KenLM as built by `pip install kenlm` reads up "
            f"to {KENLM_DEFAULT_MAX_ORDER}-grams: build it with KENLM_MAX_ORDER={n_grams} or "
            "more to load this file"
        )


main = entry_point("export", export)

if __name__ == "__main__":
    main()
    exit_now()
