"""A model in ARPA format: `python -m bigramlab.export ckpt=<run>/checkpoints/last.ckpt out=m.arpa`
or `python -m bigramlab.export source=counted out=m.arpa` (the counted model of the data, at
model.context, smoothed as counted.*).

Every model of the project but one, at any context length: learned (onehot or interpolated) and
counted (additive or Kneser–Ney). A skipgram model is refused: ARPA's backoff drops the oldest
tokens of a history, so it cannot give a context never listed the weight of a skip (which hides
the newest); listing every history a skip reaches is V times its rows, each with V targets (tens
of millions of lines for names.txt at k = 6). bigramlab.arpa writes the text so that
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

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from bigramlab.arpa import START, History, arpa_text, arpa_token, history
from bigramlab.counting.ngrams import context_keys, context_tokens, count_ngrams
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.counted import CountedModel
from bigramlab.models.features import (
    feature_keys,
    feature_spans,
    logits,
    parse_features,
    row_index,
    suffix_offset,
)
from bigramlab.models.learned import LearnedLM
from bigramlab.models.smoothing import counted_model
from bigramlab.plumbing.atomic import write_atomically
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import (
    given_settings,
    validate_alpha,
    validate_data,
    whole_number,
)

KENLM_DEFAULT_MAX_ORDER = 6  # KenLM's KENLM_MAX_ORDER unless built with another


class Listing(NamedTuple):
    """What bigramlab.arpa.arpa_text writes a model from."""

    listed: dict[History, Tensor]  # the histories listed whole: P(· | history) (V,)
    lower: Callable[[list[History]], Tensor]  # the distributions of shorter ones it must add
    unigrams: Tensor  # (V,)


def _by_length(
    histories: list[History], itos: str, probs: Callable[[Tensor, int], Tensor]
) -> Tensor:
    """probs(keys, length) of unpadded histories (a leading <s> dropped: KenLM's backoff drops
    it too), computed together for each length: (m, V) in the order given."""
    stoi = {arpa_token(c): i for i, c in enumerate(itos) if i}
    chars = [[stoi[t] for t in hist if t != START] for hist in histories]
    out = torch.empty(len(histories), len(itos), dtype=torch.float64)
    for length in sorted({len(c) for c in chars}):
        which = [i for i, c in enumerate(chars) if len(c) == length]
        tokens = torch.tensor([chars[i] for i in which], dtype=torch.int64).view(len(which), length)
        out[which] = probs(context_keys(tokens, len(itos)), length)
    return out


def counted_listing(model: CountedModel, itos: str) -> Listing:
    """Listed: the data's contexts with the model's P, and the shorter contexts it has a
    distribution of its own for (without padding: Kneser–Ney's lower orders) with that one, which
    is where KenLM backs off; any other history gets the model's shorter_probs."""
    V, k = len(itos), model.context
    listed = {
        history(t, itos): row
        for t, row in zip(context_tokens(model.contexts, k, V).tolist(), model.probs)
    }
    for length in range(1, k):
        keys = model.shorter_contexts(length)
        keys = keys[keys // V ** (length - 1) != 0]
        rows = model.shorter_probs(keys, length)
        for t, row in zip(context_tokens(keys, length, V).tolist(), rows):
            listed[history(t, itos)] = row

    def lower(hists: list[History]) -> Tensor:
        return _by_length(hists, itos, model.shorter_probs)

    return Listing(listed, lower, model.shorter_probs(torch.zeros(1, dtype=torch.int64), 0)[0])


def learned_listing(model: LearnedLM) -> Listing:
    """Onehot: its rows' contexts listed, everything else uniform (logits 0). Interpolated: the
    context of every row listed (a padded suffix as its whole padded context), each with the
    logits of the suffixes it has; KenLM's backoff to the longest listed suffix is then exact.
    An interpolated model of suffixes up to s < k tokens (model.max_span) reads only s tokens: it
    is written as the model of context s."""
    V, itos = len(model.itos), model.itos
    base, families = parse_features(model.features)
    reasons = ["a skip hides the newest"] if base == "skipgram" else []
    reasons += [f"+{family} reads beyond the suffixes" for family in families]
    if reasons:
        raise UserError(
            f"{model.describe()} cannot be written as ARPA (its backoff drops the oldest tokens; "
            f"{', '.join(reasons)}): export a model.features=interpolated run instead"
        )
    context = model.span
    W = model.W.double()
    if model.features == "onehot":
        tokens = context_tokens(model.row_keys, context, V).tolist()
        listed = {history(t, itos): row for t, row in zip(tokens, W.softmax(dim=1))}
        uniform = torch.full((V,), 1.0 / V, dtype=torch.float64)
        return Listing(listed, lambda hists: uniform.expand(len(hists), V), uniform)

    def probs(keys: Tensor, length: int) -> Tensor:
        rows = row_index(model.row_keys, feature_keys(keys, length, V, "interpolated"))
        return logits(W, rows).softmax(dim=1)

    lengths = feature_spans(model.row_keys, context, V)
    listed = {}
    for length in range(1, context + 1):
        suffixes = model.row_keys[lengths == length] - suffix_offset(length, V)
        padded = suffixes // V ** (length - 1) == 0
        # A padded suffix fixes its whole context: the padding is all that comes before it.
        for keys, n in ((suffixes[padded], context), (suffixes[~padded], length)):
            for t, row in zip(context_tokens(keys, n, V).tolist(), probs(keys, n)):
                listed[history(t, itos)] = row

    def lower(hists: list[History]) -> Tensor:
        return _by_length(hists, itos, probs)

    return Listing(listed, lower, probs(torch.zeros(1, dtype=torch.int64), 0)[0])


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


def model_arpa(cfg: DictConfig) -> tuple[str, str, int, int]:
    """(the ARPA text, what it is, its vocabulary size, its context length) of the model the
    config names."""
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
        text = arpa_text(model.itos, *learned_listing(model))
        return text, f"{cfg.ckpt} ({model.describe()})", len(model.itos), model.span
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
        counted.counts, float(cfg.counted.alpha), cfg.counted.smoothing, counted.contexts, context
    )
    itos = counted.vocab.itos
    text = arpa_text(itos, *counted_listing(model, itos))
    dataset = HydraConfig.get().runtime.choices.get("dataset", "?")
    if "path" in cfg.dataset:
        dataset += f" dataset.path={cfg.dataset.path}"
    what = (
        f"the counted model of dataset={dataset} ({cfg.data.split_rule} split, train words; "
        f"model.context={context} {model.describe()})"
    )
    return text, what, len(itos), context


def export(cfg: DictConfig) -> None:
    out = output_path(cfg)
    text, what, V, context = model_arpa(cfg)
    n_grams = context + 1
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
