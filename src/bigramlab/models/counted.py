"""The counted models of the train counts, one interface for every smoothing.

Notation (as on the lecture's board), for a vocabulary of V tokens and C contexts of k tokens
(for the bigram, k = 1 and C = V; bigramlab.counting.ngrams for longer ones):
    N: (C, V) counts, N[i, j] = how often token j follows context i
    P: (C, V) row-stochastic probabilities, P[i, j] = P(j | i)

    CountedModel    what every counted model answers: the language-model interface
                    (bigramlab.models.lm: P(· | h) for any context h, its ARPA listing), P of the
                    data's contexts, its NLL per split, and the distributions of shorter
                    histories it backs off to (shorter_contexts, shorter_probs)
    AdditiveModel   P = (N + α) / row sums; α = 0 is the exact MLE
    KneserNey       interpolated modified Kneser–Ney (bigramlab.models.kneser_ney)
    counted_model   the model counted.smoothing names, fitted on the train counts
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from bigramlab.arpa import History, Listing, by_length, history
from bigramlab.keys import context_tokens
from bigramlab.models.lm import LanguageModel
from bigramlab.models.nll import dense_rows, split_nlls


def mle_probs(counts: Tensor, alpha: float = 0.0) -> Tensor:
    """P = (N + α) / row sums, in float64.  counts: (C, V) -> P: (C, V).

    With α = 0 this is the exact maximum-likelihood estimate. A row never seen in the data has no
    MLE (every distribution is equally likely); it is left all zero, so any event of it has
    probability 0 and an infinite NLL, like every other unseen event under α = 0.
    """
    # In place on one (C, V) float64: a row of zero sum has α = 0 and zeros, and stays zeros.
    if counts.is_sparse:
        smoothed = counts.double().to_dense()
    else:
        smoothed = counts.to(torch.float64, copy=True)
    smoothed += alpha
    return smoothed.div_(smoothed.sum(dim=1, keepdim=True).clamp_min(1e-300))


def smoothing_setting(smoothing: str, alpha: float) -> str:
    """A smoothing as the configs spell it: `counted.smoothing=additive counted.alpha=1.0`, or
    `counted.smoothing=kneser_ney` (α is additive smoothing's alone)."""
    if smoothing == "additive":
        return f"counted.smoothing=additive counted.alpha={alpha}"
    return f"counted.smoothing={smoothing}"


class CountedModel(LanguageModel):
    """A counted model of the train counts at a context of `context` tokens over the vocabulary
    `itos`: `probs` (C, V) float64 for the data's contexts `contexts` (C,) (sorted keys,
    bigramlab.keys), and `nll`, its mean NLL on each non-empty split. Made once a run; it does
    not change in training.

    A subclass fits itself to the train counts (`fit`), gives P of the data's contexts (`probs`,
    `row_probs`) and of the contexts it has no row for (`unseen_probs`), and says what it backs
    off to (`shorter_probs`)."""

    smoothing: str
    probs: Tensor
    # The tensors `to` moves.
    _tensors: tuple[str, ...] = ("probs", "contexts")

    def __init__(
        self, counts: dict[str, Tensor], contexts: Tensor, context: int, itos: str
    ) -> None:
        if len(itos) != counts["train"].shape[1]:
            raise ValueError(f"{len(itos)} tokens for counts of {counts['train'].shape[1]}")
        self.contexts, self.context, self.itos = contexts, context, itos
        self.fit(counts["train"])
        self.nll = split_nlls(self.probs.log(), counts)

    def fit(self, train: Tensor) -> None:
        """Fit to the train counts N (C, V): `probs` is then P (C, V) of the data's contexts."""
        raise NotImplementedError

    def row_probs(self, rows: Tensor) -> Tensor:
        """P (m, V) float64 of the data's contexts at positions `rows` (m,): probs[rows]."""
        return self.probs[rows]

    def unseen_probs(self, keys: Tensor) -> Tensor:
        """P(· | h) (m, V) float64 for contexts h (m,) that are not the data's."""
        raise NotImplementedError

    def shorter_contexts(self, length: int) -> Tensor:
        """The contexts of `length` < k tokens (keys, sorted) with a distribution of their own."""
        raise NotImplementedError

    def shorter_probs(self, keys: Tensor, length: int) -> Tensor:
        """P(· | h) (m, V) float64 for histories h (m,) of `length` < k tokens: what the model
        backs off to for a context it does not list."""
        raise NotImplementedError

    def describe(self) -> str:
        """The model as the configs spell it (smoothing_setting)."""
        return smoothing_setting(self.smoothing, 0.0)

    def next_probs(self, contexts: Tensor) -> Tensor:
        """P(· | h) (C', V) for any contexts h (C',), on their device: the row of a data's
        context, unseen_probs for any other."""
        device = self.contexts.device  # the report keeps a run's counted model where W is
        query, known = contexts.to(device), self.contexts.to(device)
        row = torch.searchsorted(known, query).clamp(max=len(known) - 1)
        seen = known[row] == query
        out = self.row_probs(row)
        if not seen.all():
            out[~seen] = self.unseen_probs(query[~seen].cpu()).to(out)
        return out.to(contexts.device)

    def log_probs(self, contexts: Tensor) -> Tensor:
        return self.next_probs(contexts).double().log()

    def arpa_listing(self) -> Listing:
        """Listed: the data's contexts with the model's P, and the shorter contexts it has a
        distribution of its own for (without padding: Kneser–Ney's lower orders) with that one,
        which is where KenLM backs off; any other history gets the model's shorter_probs."""
        V, k, itos = self.vocab_size, self.context, self.itos
        listed: dict[History, Tensor] = {
            history(t, itos): row
            for t, row in zip(context_tokens(self.contexts, k, V).tolist(), self.probs)
        }
        for length in range(1, k):
            keys = self.shorter_contexts(length)
            keys = keys[keys // V ** (length - 1) != 0]
            rows = self.shorter_probs(keys, length)
            for t, row in zip(context_tokens(keys, length, V).tolist(), rows):
                listed[history(t, itos)] = row

        def lower(hists: list[History]) -> Tensor:
            return by_length(hists, itos, self.shorter_probs)

        unigrams = self.shorter_probs(torch.zeros(1, dtype=torch.int64), 0)[0]
        return Listing(listed, lower, unigrams, k)

    def to(self, device: torch.device | str) -> CountedModel:
        """A copy with its tensors on `device` (the report keeps them where W is)."""
        moved = copy.copy(self)
        for name in self._tensors:
            setattr(moved, name, getattr(self, name).to(device))
        return moved


class AdditiveModel(CountedModel):
    """P = (N_train + α) / row sums (α = 0: the exact MLE). A context the data never saw gets the
    uniform distribution for α > 0 (α for each of V tokens), and zeros for α = 0 (no MLE); so does
    every shorter history, which an ARPA file then never lists.

    It keeps the train counts as counted (sparse at longer contexts) and makes P from them when
    asked, all of it (`probs`) or some rows (`row_probs`): a run's report then holds the counts
    (memory that grows with the n-grams seen) rather than a dense (C, V) float64 through
    training."""

    smoothing = "additive"
    _tensors = ("train", "contexts")

    def __init__(
        self, counts: dict[str, Tensor], contexts: Tensor, context: int, itos: str, alpha: float
    ) -> None:
        self.alpha = alpha
        super().__init__(counts, contexts, context, itos)

    def fit(self, train: Tensor) -> None:
        self.train = train.coalesce() if train.is_sparse else train

    @property
    def probs(self) -> Tensor:
        return mle_probs(self.train, self.alpha)

    def row_probs(self, rows: Tensor) -> Tensor:
        return mle_probs(dense_rows(self.train, rows), self.alpha)

    def unseen_probs(self, keys: Tensor) -> Tensor:
        fill = 1.0 / self.vocab_size if self.alpha > 0 else 0.0
        return torch.full((len(keys), self.vocab_size), fill, dtype=torch.float64)

    def shorter_contexts(self, length: int) -> Tensor:
        return torch.zeros(0, dtype=torch.int64)

    def shorter_probs(self, keys: Tensor, length: int) -> Tensor:
        V = self.vocab_size
        return torch.full((len(keys), V), 1.0 / V, dtype=torch.float64)

    def describe(self) -> str:
        return smoothing_setting(self.smoothing, self.alpha)
