"""NLL and perplexity of a trained model on a data set's splits, or on given words.

python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt dataset=names
python -m bigramlab.evaluate ckpt=<run>/checkpoints/last.ckpt 'words=[emma,zzz]'
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from pathlib import Path

import hydra
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor

from bigramlab.config import checkpoint_path, validate_data
from bigramlab.counting import nll
from bigramlab.data import (
    SPLITS,
    EnglishWords,
    Names,
    TextFile,
    Vocab,
    bigram_pairs,
    corpus_name,
    count_corpus,
)
from bigramlab.errors import UserError
from bigramlab.model import load_checkpoint

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def word_nlls(
    log_probs: Tensor, vocab: Vocab, words: Sequence[str]
) -> list[tuple[str, int, float]]:
    """(word, bigrams, mean NLL over its len(word) + 1 bigrams) for each word."""
    rows = []
    for word in words:
        xs, ys = bigram_pairs([word], vocab)
        rows.append((word, len(xs), float(-log_probs[xs, ys].double().mean())))
    return rows


def split_nlls(
    log_probs: Tensor, vocab: Vocab, corpus: EnglishWords | Names | TextFile,
    split: Sequence[float], split_seed: int,
) -> list[tuple[str, int, int, float | None]]:  # fmt: skip
    """(split, words, bigrams, mean NLL or None if empty) for train, val and test.

    The corpus is counted in pieces, as for training (memory O(V²), not O(corpus)); its counts,
    over its own vocabulary, are moved to the checkpoint's, which must hold every character.
    """
    corpus_vocab, n_words, counts = count_corpus(corpus, split, split_seed)
    for ch in corpus_vocab.itos:
        if ch not in vocab.stoi:
            raise UserError(
                f"character {ch!r} (in {corpus_name(corpus)}) is not in the vocabulary "
                f"{vocab.itos!r}: use data (or a checkpoint) whose vocabulary has it"
            )
    ids = torch.tensor([vocab.stoi[ch] for ch in corpus_vocab.itos])
    rows = []
    for name in SPLITS:
        N = torch.zeros(len(vocab), len(vocab), dtype=counts[name].dtype)
        N[ids[:, None], ids[None, :]] = counts[name]
        rows.append((name, n_words[name], int(N.sum()), nll(log_probs, N)))
    return rows


def _ppl(value: float | None) -> str:
    return "null" if value is None else f"{math.exp(value):.4f}"


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    try:
        W, itos = load_checkpoint(checkpoint_path(cfg))
        vocab = Vocab(itos)
        log_probs = W.double().log_softmax(dim=1)
        print(f"checkpoint {cfg.ckpt} ({len(vocab)} tokens)")
        if cfg.words is not None:
            words = [str(w) for w in cfg.words]
            rows = word_nlls(log_probs, vocab, words)
            print(f"{'word':<20} {'bigrams':>8} {'nll':>10} {'ppl':>10}")
            for word, n, value in rows:
                print(f"{word:<20} {n:>8} {value:>10.6f} {_ppl(value):>10}")
            return
        validate_data(cfg)
        rows = split_nlls(log_probs, vocab, instantiate(cfg.dataset), cfg.data.split,
                          cfg.data.split_seed)  # fmt: skip
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"{'split':<6} {'words':>8} {'bigrams':>10} {'nll':>10} {'ppl':>10}")
    for name, n_words, n_bigrams, value in rows:
        shown = "null" if value is None else f"{value:.6f}"
        print(f"{name:<6} {n_words:>8} {n_bigrams:>10} {shown:>10} {_ppl(value):>10}")


if __name__ == "__main__":
    main()
