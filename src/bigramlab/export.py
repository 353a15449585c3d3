"""A model in ARPA format: `python -m bigramlab.export ckpt=<run>/checkpoints/last.ckpt out=m.arpa`
or `python -m bigramlab.export source=counted out=m.arpa` (the counted model of the data).

ARPA lists log10 probabilities of n-grams, and log10 backoff weights for the contexts whose
n-grams are not all listed. A model whose distribution is listed for every context needs no
backoff: that is what is written, so KenLM's probability of every listed n-gram is bigramlab's.

Tokens: one character a token; the boundary `.` is `<s>` as a context and `</s>` as a target; a
character ARPA cannot hold (whitespace: ARPA separates tokens by it) is written `<U+XXXX>`, its
code point in hex (a space is `<U+0020>`); evaluate the same stand-ins in KenLM. `<unk>` (a
character outside the vocabulary) is a unigram of probability 1/(V + 1), V the vocabulary with
`.`: the unigrams are uniform over the characters, `</s>` and `<unk>`, reached only where a context
is not listed (`<unk>` as a context) or a target is `<unk>`; `<s>` has -99, as in KenLM's files.
A probability 0 (an unsmoothed counted model's unseen bigram) is written as -99 (log10).

Built for the bigram (context 1, any features and smoothing); longer contexts are refused with a
message for now.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from bigramlab.atomic import write_atomically
from bigramlab.checkpoint import load_trained_model
from bigramlab.cli import entry_point, exit_now
from bigramlab.config import validate_alpha, validate_data
from bigramlab.errors import UserError
from bigramlab.estimators import counted_model
from bigramlab.ngrams import count_ngrams

ZERO_LOG10 = -99.0  # ARPA's stand-in for log10(0)


def arpa_token(ch: str) -> str:
    """A character as an ARPA token: itself, or `<U+XXXX>` where it is whitespace."""
    return f"<U+{ord(ch):04X}>" if ch.isspace() or not ch.isprintable() else ch


def arpa_bigram(probs: Tensor, itos: str) -> str:
    """The ARPA text of a bigram model P (V, V) (row: the context, `.` first), every context's
    distribution listed."""
    V = len(itos)
    names = ["<s>" if i == 0 else arpa_token(ch) for i, ch in enumerate(itos)]
    targets = ["</s>" if i == 0 else arpa_token(ch) for i, ch in enumerate(itos)]
    uniform = -math.log10(V + 1)
    log10 = torch.where(
        probs > 0, probs.double().log10(), torch.full_like(probs.double(), ZERO_LOG10)
    )
    log10 = log10.clamp_min(ZERO_LOG10).tolist()
    unigrams = [f"{uniform:.8f}\t<unk>\t0", f"{ZERO_LOG10:.1f}\t<s>\t0", f"{uniform:.8f}\t</s>"]
    unigrams += [f"{uniform:.8f}\t{name}\t0" for name in names[1:]]
    bigrams = [f"{log10[i][j]:.8f}\t{names[i]} {targets[j]}" for i in range(V) for j in range(V)]
    lines = ["", "\\data\\", f"ngram 1={len(unigrams)}", f"ngram 2={len(bigrams)}", "",
             "\\1-grams:", *unigrams, "", "\\2-grams:", *bigrams, "", "\\end\\", ""]  # fmt: skip
    return "\n".join(lines)


def output_path(cfg: DictConfig) -> Path:
    """`out`, checked: its directory exists, and it is not there unless overwrite=true."""
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


def model_probs(cfg: DictConfig) -> tuple[Tensor, str, str]:
    """(P (V, V), its vocabulary, what it is) of the model the config names."""
    if cfg.source == "checkpoint":
        if cfg.ckpt is None:
            raise UserError("no checkpoint given: add ckpt=<run dir>/checkpoints/last.ckpt, "
                            "or source=counted for the counted model of the data")  # fmt: skip
        model = load_trained_model(cfg.ckpt)
        if model.order != 1:
            raise UserError(f"{cfg.ckpt} has model.context={model.order}: export writes bigram "
                            "models (context 1) so far")  # fmt: skip
        probs = model.logits(torch.arange(len(model.itos))).double().softmax(dim=1)
        return probs, model.itos, f"{cfg.ckpt} ({model.describe()})"
    if cfg.source != "counted":
        raise UserError(f"source={cfg.source!r} is unknown: choose checkpoint or counted")
    if cfg.model.context != 1:
        raise UserError(f"model.context={cfg.model.context}: export writes bigram models "
                        "(context 1) so far")  # fmt: skip
    validate_data(cfg)
    validate_alpha(cfg)
    counted = count_ngrams(instantiate(cfg.dataset), 1, cfg.data.split, cfg.data.split_seed,
                           cfg.data.split_rule)  # fmt: skip
    model = counted_model(counted.counts, float(cfg.mle.alpha), cfg.mle.smoothing,
                          counted.contexts, 1)  # fmt: skip
    what = f"the counted model (mle.smoothing={cfg.mle.smoothing}, mle.alpha={cfg.mle.alpha})"
    return model.probs, counted.vocab.itos, what


def export(cfg: DictConfig) -> None:
    out = output_path(cfg)
    probs, itos, what = model_probs(cfg)
    text = arpa_bigram(probs, itos)
    write_atomically(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    print(f"wrote {out} ({out.stat().st_size:,} bytes): {what}, {len(itos)} tokens")


main = entry_point("export", export)

if __name__ == "__main__":
    main()
    exit_now()
