"""The learned model, one object for training, evaluate, sample and export: a plain nn.Module that
implements the language-model interface (bigramlab.models.lm).

A context h of `context` = k tokens (its bigramlab.keys key) predicts the next token by

    logits(h) = Σ_{f ∈ features(h)} W[f],    P_W(· | h) = softmax(logits(h))

W (R, V) has a row per feature key of `row_keys` (R,), sorted (bigramlab.models.features):
onehot, one row per context (for k = 1 the lecture's one_hot(x) @ W, W (V, V)); interpolated,
one per suffix of the context (of at most `max_span` tokens); skipgram, those and one per suffix
with its newest token hidden; the families (+position, +start), theirs. A feature without a row
(never seen in the data W was made for) adds nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from bigramlab.arpa import Listing
from bigramlab.errors import UserError
from bigramlab.models.features import (
    check_features,
    check_max_span,
    feature_keys,
    longest_span,
    parse_features,
    row_index,
    row_penalty_scale,
    summed_rows,
    token_classes,
)
from bigramlab.models.learned_arpa import learned_listing
from bigramlab.models.lm import LanguageModel
from bigramlab.models.nll import row_totals


class LearnedLM(nn.Module, LanguageModel):
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
        check_features(features)
        check_max_span(max_span, context)
        if W.shape != (len(row_keys), len(itos)):
            raise ValueError(f"W {tuple(W.shape)} needs {len(row_keys)} rows of {len(itos)}")
        self.itos, self.context, self.features = itos, context, features
        self.max_span = max_span
        self.classes = token_classes(itos)  # for +classes
        self.W = nn.Parameter(W)
        self.register_buffer("row_keys", row_keys)
        # The rows of the contexts asked last (training and the report ask for the data's at
        # every step): (contexts, rows (C, F), whether the rows are W's own, in order).
        self._rows_of: tuple[Tensor, Tensor, bool] | None = None

    @classmethod
    def for_data(
        cls,
        itos: str,
        contexts: Tensor,
        train_counts: Tensor,
        context: int = 1,
        features: str = "onehot",
        max_span: int | None = None,
        init_seed: int = 2147483647,
    ) -> LearnedLM:
        """The model of a data set before training: onehot, a row for every context of the data
        (`contexts` (C,), any split: the rows only held-out data use are trained by the penalty
        alone), W ~ N(0, 1) from a generator seeded with `init_seed`, as in the lecture;
        interpolated and skipgram, a row for every feature of the contexts seen in training
        (`train_counts` (C, V)), W = 0 (every context uniform: the objective is convex, and a
        solver started at zero has no scale to undo)."""
        V = len(itos)
        check_features(features)
        if features == "onehot":
            row_keys = contexts.clone()
        else:
            seen = contexts[row_totals(train_counts) > 0]
            keys = feature_keys(seen, context, V, features, max_span, token_classes(itos))
            row_keys = torch.unique(keys[keys >= 0])  # -1: a feature the context lacks
        W = initial_weights(features, len(row_keys), V, init_seed)
        return cls(itos, context, features, row_keys, W, max_span)

    @property
    def span(self) -> int:
        """The longest suffix and skip (model.max_span, or the context)."""
        return longest_span(self.context, self.max_span)

    def rows(self, contexts: Tensor) -> Tensor:
        """The rows of W each context (C,) adds up: (C, F), R where a feature has no row."""
        keys = feature_keys(
            contexts, self.context, self.vocab_size, self.features, self.max_span, self.classes
        )
        return row_index(self.row_keys, keys.to(self.row_keys.device))

    def logits(self, contexts: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """logits(h) (C, V) for contexts h (C,), summed in `dtype` (default W's; float64 for
        scoring, where only the rows the contexts use are converted, not all of W)."""
        if self._rows_of is not None and self._rows_of[0] is contexts:
            _, rows, own = self._rows_of
        else:
            rows = self.rows(contexts).to(self.W.device)
            # int32 where the row indices fit (every W here): half the memory of (C, F).
            rows = rows.int() if len(self.row_keys) < 2**31 - 1 else rows
            own = self.features == "onehot" and torch.equal(
                contexts.to(self.row_keys.device), self.row_keys
            )
            if len(contexts) > 1:  # not a sampled word's one context at a time
                self._rows_of = (contexts, rows, own)
        if dtype is None or dtype == self.W.dtype:
            return self.W if own else summed_rows(self.W, rows)
        if rows.numel() >= len(self.W):  # many contexts: all of W converted once is less work
            return summed_rows(self.W.to(dtype), rows)
        total = torch.zeros(len(contexts), self.vocab_size, dtype=dtype, device=self.W.device)
        for f in range(rows.shape[1]):
            present = rows[:, f] < len(self.row_keys)
            total[present] += self.W[rows[present, f].long()].to(dtype)
        return total

    def forward(self, contexts: Tensor) -> Tensor:
        return self.logits(contexts)

    @torch.no_grad()
    def log_probs(self, contexts: Tensor) -> Tensor:
        return self.logits(contexts, torch.float64).log_softmax(dim=1).to(contexts.device)

    def uniform_contexts(self, contexts: Tensor) -> Tensor:
        """A onehot model has no row for a context its data never had: logits 0, uniform."""
        if self.features != "onehot":  # onehot takes no families (check_features)
            return torch.zeros(len(contexts), dtype=torch.bool)
        return row_index(self.row_keys, contexts.to(self.row_keys.device)) >= len(self.row_keys)

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

    def settings(self) -> dict[str, Any]:
        """What rebuilds the model from its state_dict (a checkpoint's hyper_parameters)."""
        return {
            "vocab": self.itos,
            "context": self.context,
            "features": self.features,
            "max_span": self.max_span,
            "n_rows": len(self.row_keys),
        }

    def arpa_listing(self) -> Listing:
        base, families = parse_features(self.features)
        reasons = ["a skip hides the newest"] if base == "skipgram" else []
        reasons += [f"+{family} reads beyond the suffixes" for family in families]
        if reasons:
            raise UserError(
                f"{self.describe()} cannot be written as ARPA (its backoff drops the oldest "
                f"tokens; {', '.join(reasons)}): export a model.features=interpolated run instead"
            )
        return learned_listing(self)


def initial_weights(features: str, rows: int, V: int, init_seed: int) -> Tensor:
    """W before training (see LearnedLM.for_data): N(0, 1) for onehot, zeros otherwise."""
    if features != "onehot":
        return torch.zeros(rows, V)
    return torch.randn((rows, V), generator=torch.Generator().manual_seed(init_seed))


def describe(context: int, features: str, max_span: int | None) -> str:
    """A model's kind as the configs spell it: what a checkpoint and a run must share to resume."""
    span = "" if max_span is None else f" model.max_span={max_span}"
    return f"model.context={context} model.features={features}{span}"
