"""NLL and perplexity of a trained model on a data set's splits, beside the counted model's
(P = (N_train + mle.alpha) / row sums, from the same split's train words); or on given words.

python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt dataset=names
python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt 'words=[emma,zzz]'
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig
from torch import Tensor

from bigramlab.checkpoint import load_trained_model
from bigramlab.cli import entry_point, exit_now
from bigramlab.config import checkpoint_path, validate_alpha, validate_data
from bigramlab.corpora import Corpus
from bigramlab.counting import count_corpus
from bigramlab.errors import UserError
from bigramlab.estimators import counted_model, mean_nll
from bigramlab.vocab import SPLITS, Vocab, bigram_pairs


def word_nlls(
    log_probs: Tensor, vocab: Vocab, words: Sequence[str]
) -> list[tuple[str, int, float]]:
    """(word, bigrams, mean NLL over its len(word) + 1 bigrams) for each word."""
    rows = []
    for word in words:
        xs, ys = bigram_pairs([word], vocab)
        rows.append((word, len(xs), float(-log_probs[xs, ys].double().mean())))
    return rows


def split_rows(
    log_probs: Tensor,
    vocab: Vocab,
    corpus: Corpus,
    split: Sequence[float],
    split_seed: int,
    split_rule: str = "randperm",
    alpha: float = 1.0,
) -> list[tuple[str, int, int, float | None, float | None]]:
    """(split, words, bigrams, mean NLL, the counted model's mean NLL) for train, val and test;
    the NLLs None where the split is empty.

    The corpus is counted in pieces, as for training (memory O(V²), not O(corpus)); its counts,
    over its own vocabulary, are moved to the checkpoint's, which must hold every character. The
    counted model (smoothing `alpha`) is that of training: over the data's own vocabulary.
    """
    counted = count_corpus(corpus, split, split_seed, split_rule)
    counted_nll = counted_model(counted.counts, alpha).nll
    if error := vocab.missing(counted.vocab.itos, corpus.name):
        raise error
    ids = torch.tensor([vocab.stoi[ch] for ch in counted.vocab.itos])
    rows = []
    for name in SPLITS:
        N = torch.zeros(len(vocab), len(vocab), dtype=counted.counts[name].dtype)
        N[ids[:, None], ids[None, :]] = counted.counts[name]
        rows.append((name, counted.n_words[name], int(N.sum()), mean_nll(log_probs, N),
                     counted_nll.get(name)))  # fmt: skip
    return rows


def _nll(value: float | None) -> str:
    return "null" if value is None else f"{value:.6f}"


def _ppl(value: float | None) -> str:
    return "null" if value is None else f"{math.exp(value):.4f}"


def evaluate(cfg: DictConfig) -> None:
    model = load_trained_model(checkpoint_path(cfg))
    vocab = Vocab(model.itos)
    log_probs = model.W.double().log_softmax(dim=1)
    if cfg.words is not None:
        if not isinstance(cfg.words, ListConfig):
            # words=emma is a string, which would be scored letter by letter.
            raise UserError(f"words={cfg.words!r} is not a list: write words=[{cfg.words}]")
        rows = word_nlls(log_probs, vocab, [str(w) for w in cfg.words])
        print(f"checkpoint {cfg.ckpt} ({len(vocab)} tokens)")
        print(f"{'word':<20} {'bigrams':>8} {'nll':>10} {'ppl':>10}")
        for word, n, value in rows:
            print(f"{word:<20} {n:>8} {value:>10.6f} {_ppl(value):>10}")
        return
    validate_data(cfg)
    validate_alpha(cfg)
    alpha = float(cfg.mle.alpha)
    rows = split_rows(log_probs, vocab, instantiate(cfg.dataset), cfg.data.split,
                      cfg.data.split_seed, cfg.data.split_rule, alpha)  # fmt: skip
    print(f"checkpoint {cfg.ckpt} ({len(vocab)} tokens); mle: the counted model, "
          f"mle.alpha={cfg.mle.alpha}, fitted on the same train split")  # fmt: skip
    print(f"{'split':<6} {'words':>8} {'bigrams':>10} {'nll':>10} {'ppl':>10} "
          f"{'mle_nll':>10} {'mle_ppl':>10}")  # fmt: skip
    impossible = False
    for name, n_words, n_bigrams, value, mle_value in rows:
        mle_shown = _nll(mle_value)
        if mle_value is not None and math.isinf(mle_value):
            mle_shown, impossible = "inf*", True
        print(f"{name:<6} {n_words:>8} {n_bigrams:>10} {_nll(value):>10} {_ppl(value):>10} "
              f"{mle_shown:>10} {_ppl(mle_value):>10}")  # fmt: skip
    if impossible:
        print("* the counted model gives probability 0 to a bigram of this split that the train "
              "split does not have (mle.alpha=0): set mle.alpha above 0 to smooth it")  # fmt: skip


main = entry_point("evaluate", evaluate)

if __name__ == "__main__":
    main()
    exit_now()
