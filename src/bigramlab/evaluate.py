"""NLL and perplexity of a trained model on a data set's splits, beside the counted model's
(additive or Kneser–Ney, from the same split's train words); or on given words.

python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt dataset=names
python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt 'words=[emma,zzz]'

At the checkpoint's context length; the counted model with counted.smoothing and counted.alpha.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig

from bigramlab.counting.ngrams import context_keys, context_tokens, count_ngrams, event_keys
from bigramlab.data.corpora import Corpus
from bigramlab.data.vocab import SPLITS, Vocab
from bigramlab.errors import UserError
from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.learned import LearnedLM
from bigramlab.models.nll import mean_nll, seen_counts
from bigramlab.models.smoothing import counted_model
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import checkpoint_path, smoothing_name, validate_alpha, validate_data


class SplitRow(NamedTuple):
    """One split of a data set scored: its words and events (tokens predicted), the checkpoint's
    and the counted model's mean NLL (None where the split is empty), and the events whose
    context has no row of its own in a onehot W (predicted uniformly)."""

    split: str
    words: int
    events: int
    nll: float | None
    counted_nll: float | None
    rowless: int


def word_nlls(model: LearnedLM, words: Sequence[str]) -> list[tuple[str, int, float]]:
    """(word, events, mean NLL over its len(word) + 1 events) for each word."""
    vocab = Vocab(model.itos)
    rows = []
    for word in words:
        ids = vocab.encode_words([word]).numpy()
        contexts, tokens = (torch.from_numpy(a) for a in event_keys(ids, model.context, len(vocab)))
        log_probs = model.log_probs(contexts)
        rows.append(
            (word, len(tokens), float(-log_probs[torch.arange(len(tokens)), tokens].mean()))
        )
    return rows


def split_rows(
    model: LearnedLM,
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
    counted_nll = counted_model(counts, alpha, smoothing, counted.contexts, context).nll
    if error := vocab.missing(counted.vocab.itos, corpus.name):
        raise error
    ids = torch.tensor([vocab.stoi[ch] for ch in counted.vocab.itos])
    tokens = ids[context_tokens(counted.contexts, context, len(counted.vocab))]
    contexts = context_keys(tokens, len(vocab))
    log_probs = model.log_probs(contexts)
    rowless = ~model.has_rows(contexts)
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


def evaluate(cfg: DictConfig) -> None:
    model = load_checkpoint(checkpoint_path(cfg)).model
    kind = f"{len(model.itos)} tokens, {model.describe()}"
    if cfg.words is not None:
        if not isinstance(cfg.words, ListConfig):
            # words=emma is a string, which would be scored letter by letter.
            raise UserError(f"words={cfg.words!r} is not a list: write words=[{cfg.words}]")
        rows = word_nlls(model, [str(w) for w in cfg.words])
        print(f"checkpoint {cfg.ckpt} ({kind})")
        print(f"{'word':<20} {'events':>8} {'nll':>10} {'ppl':>10}")
        for word, n, value in rows:
            print(f"{word:<20} {n:>8} {value:>10.6f} {_ppl(value):>10}")
        return
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
    print(
        f"checkpoint {cfg.ckpt} ({kind}); counted: the counted model, "
        f"{smoothing_name(cfg)}, fitted on the same train split"
    )
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
                f"{row.split}: {row.rowless} of {row.events} events have a context the onehot "
                "model has no row for (never in its training data): it predicts them uniformly; "
                "model.features=interpolated or skipgram backs off to shorter "
                "contexts"
            )


main = entry_point("evaluate", evaluate)

if __name__ == "__main__":
    main()
    exit_now()
