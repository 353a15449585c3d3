"""Contexts as integer keys (bigramlab.keys): the padded contexts of a word's events, and the
longest context whose keys fit 64 bits."""

from __future__ import annotations

import pytest
import torch

from bigramlab.data.vocab import Vocab
from bigramlab.errors import UserError
from bigramlab.keys import check_context, context_tokens, event_keys


def test_event_keys_are_the_padded_contexts() -> None:
    vocab = Vocab.from_words(["emma", "ab"])
    contexts, tokens = event_keys(vocab.encode_words(["emma", "ab"]).numpy(), 3, len(vocab))
    shown = [
        "".join(vocab.itos[t] for t in row)
        for row in context_tokens(torch.from_numpy(contexts), 3, len(vocab)).tolist()
    ]
    assert shown == ["...", "..e", ".em", "emm", "mma", "...", "..a", ".ab"]
    assert "".join(vocab.itos[t] for t in tokens) == "emma.ab."


def test_an_order_too_long_for_64_bit_keys_is_refused_with_the_longest_that_fits() -> None:
    check_context(11, 27)
    with pytest.raises(UserError, match=r"model.context=12 is too long .* use model.context <= 11"):
        check_context(12, 27)
