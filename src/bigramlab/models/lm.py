"""The language-model interface that every model of the package implements (nltk's
`LanguageModel` is the example), and what is written once over it.

A model predicts the next token from a context h of its last k tokens (`context` = k), over the
vocabulary `itos` (`.` first, V tokens); a context is its integer key (bigramlab.keys):

    log_probs(contexts) -> log P(· | h)      contexts (C,) int64 keys -> (C, V) float64

It says what it is as the configs spell it (`describe`), which contexts it predicts uniformly for
want of anything learned of them (`uniform_contexts`), and gives its ARPA listing where it has one
(`arpa_listing`; a model that has none refuses in one line that says why).

Over the interface alone: the NLL of words (`word_nlls`) and of counts
(bigramlab.models.nll.split_nlls of `log_probs`), sampling (bigramlab.models.sampling), the
comparison's metrics (bigramlab.comparison.metrics.compare), the ARPA file
(bigramlab.arpa.arpa_text of `arpa_listing`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor

from bigramlab.arpa import Listing
from bigramlab.data.vocab import Vocab
from bigramlab.errors import UserError
from bigramlab.keys import event_keys


class LanguageModel(ABC):
    """P(· | h) for contexts h of `context` tokens over the vocabulary `itos`."""

    itos: str
    context: int

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @abstractmethod
    def log_probs(self, contexts: Tensor) -> Tensor:
        """log P(· | h) (C, V) float64 for contexts h (C,) (keys), on the contexts' device; no
        gradient."""

    @abstractmethod
    def describe(self) -> str:
        """The model as the configs spell it, e.g. `model.context=3 model.features=onehot`."""

    def uniform_contexts(self, contexts: Tensor) -> Tensor:
        """(C,) bool: the contexts the model predicts uniformly because it learned nothing of
        them (none, unless a model says otherwise)."""
        return torch.zeros(len(contexts), dtype=torch.bool)

    def arpa_listing(self) -> Listing:
        """What bigramlab.arpa.arpa_text writes the model from. A model without one refuses."""
        raise UserError(
            f"{self.describe()} cannot be written as ARPA (an ARPA file backs off from a context "
            "to its suffixes, which this model does not): export an n-gram model instead"
        )


def word_nlls(model: LanguageModel, words: Sequence[str]) -> list[tuple[str, int, float]]:
    """(word, events, mean NLL over its len(word) + 1 events) for each word, every character of
    it predicted from the k before it (`.` padding the start) and the word's end."""
    vocab = Vocab(model.itos)
    rows = []
    for word in words:
        ids = vocab.encode_words([word]).numpy()
        contexts, tokens = (
            torch.from_numpy(a) for a in event_keys(ids, model.context, model.vocab_size)
        )
        log_probs = model.log_probs(contexts)
        picked = log_probs[torch.arange(len(tokens)), tokens]
        rows.append((word, len(tokens), float(-picked.mean())))
    return rows
