"""The learned model, one object for training, evaluate, sample and export: a plain nn.Module.

A context h of `context` = k tokens (its bigramlab.counting.ngrams key) predicts the next token by

    logits(h) = Σ_{f ∈ features(h)} W[f],    P_W(· | h) = softmax(logits(h))

W (R, V) has a row per feature key of `row_keys` (R,), sorted (bigramlab.models.features):
onehot, one row per context (for k = 1 the lecture's one_hot(x) @ W, W (V, V)); interpolated,
one per suffix of the context (of at most `max_span` tokens); skipgram, those and one per suffix
with its newest token hidden; the families (+position, +start), theirs. A feature without a row
(never seen in the data W was made for) adds nothing.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bigramlab.models.features import (
    feature_keys,
    logits,
    longest_span,
    row_index,
    row_penalty_scale,
    token_classes,
)
from bigramlab.models.nll import row_totals


class LearnedLM(nn.Module):
    """W (R, V) and the feature keys of its rows; `itos` the vocabulary (`.` first); `max_span`
    the longest suffix or skip (None: `context`)."""

    def __init__(
        self,
        itos: str,
        context: int,
        features: str,
        row_keys: Tensor,
        W: Tensor,
        max_span: int | None = None,
    ) -> None:
        super().__init__()
        if W.shape != (len(row_keys), len(itos)):
            raise ValueError(f"W {tuple(W.shape)} needs {len(row_keys)} rows of {len(itos)}")
        self.itos, self.context, self.features = itos, context, features
        self.max_span = max_span
        self.classes = token_classes(itos)  # for +classes
        self.W = nn.Parameter(W)
        self.register_buffer("row_keys", row_keys)

    @classmethod
    def for_data(
        cls,
        itos: str,
        context: int,
        features: str,
        contexts: Tensor,
        train_counts: Tensor,
        init_seed: int,
        max_span: int | None = None,
    ) -> LearnedLM:
        """The model of a data set before training: onehot, a row for every context of the data
        (`contexts` (C,), any split: the rows only held-out data use are trained by the penalty
        alone), W ~ N(0, 1) from a generator seeded with `init_seed`, as in the lecture;
        interpolated and skipgram, a row for every feature of the contexts seen in training
        (`train_counts` (C, V)), W = 0 (every context uniform: the objective is convex, and a
        solver started at zero has no scale to undo)."""
        V = len(itos)
        if features == "onehot":
            row_keys = contexts.clone()
        else:
            seen = contexts[row_totals(train_counts) > 0]
            keys = feature_keys(seen, context, V, features, max_span, token_classes(itos))
            row_keys = torch.unique(keys[keys >= 0])  # -1: a feature the context lacks
        return cls(
            itos,
            context,
            features,
            row_keys,
            initial_weights(features, len(row_keys), V, init_seed),
            max_span,
        )

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def span(self) -> int:
        """The longest suffix and skip (model.max_span, or the context)."""
        return longest_span(self.context, self.max_span)

    def rows(self, contexts: Tensor) -> Tensor:
        """The rows of W each context (C,) adds up: (C, F), R where a feature has no row."""
        keys = feature_keys(
            contexts,
            self.context,
            self.vocab_size,
            self.features,
            self.max_span,
            self.classes,
        )
        return row_index(self.row_keys, keys.to(self.row_keys.device))

    def forward(self, contexts: Tensor) -> Tensor:
        """Logits (C, V) of the next token for contexts (C,)."""
        return logits(self.W, self.rows(contexts))

    @torch.no_grad()
    def log_probs(self, contexts: Tensor) -> Tensor:
        """log P_W(· | h) (C, V) for contexts (C,), summed in float64 (for scoring and sampling:
        no gradient). Only the rows the contexts use are converted, not all of W: sampling asks
        for one context at a time."""
        rows = self.rows(contexts)
        total = torch.zeros(
            len(contexts), self.vocab_size, dtype=torch.float64, device=self.W.device
        )
        for f in range(rows.shape[1]):
            present = rows[:, f] < len(self.row_keys)
            total[present] += self.W[rows[present, f]].double()
        return total.log_softmax(dim=1)

    def has_rows(self, contexts: Tensor) -> Tensor:
        """(C,) bool: whether each context has a row of its own (always, but for onehot)."""
        if self.features != "onehot":  # onehot takes no families (check_features)
            return torch.ones(len(contexts), dtype=torch.bool)
        return row_index(self.row_keys, contexts) < len(self.row_keys)

    def penalty_scale(
        self, by_length: list[float] | None, multipliers: dict[str, float] | None = None
    ) -> Tensor | None:
        """Each row's multiplier of the penalty (bigramlab.models.features.row_penalty_scale):
        by suffix length, and per kind of row ("skip" and the families)."""
        return row_penalty_scale(
            self.row_keys,
            self.context,
            self.vocab_size,
            self.features,
            by_length,
            multipliers,
            self.max_span,
        )

    def describe(self) -> str:
        """`model.context=k model.features=f` (and model.max_span), as the configs spell it."""
        return describe(self.context, self.features, self.max_span)


def initial_weights(features: str, rows: int, V: int, init_seed: int) -> Tensor:
    """W before training (see LearnedLM.for_data): N(0, 1) for onehot, zeros otherwise."""
    if features != "onehot":
        return torch.zeros(rows, V)
    return torch.randn((rows, V), generator=torch.Generator().manual_seed(init_seed))


def describe(context: int, features: str, max_span: int | None) -> str:
    """A model's kind as the configs spell it: what a checkpoint and a run must share to resume."""
    span = "" if max_span is None else f" model.max_span={max_span}"
    return f"model.context={context} model.features={features}{span}"
