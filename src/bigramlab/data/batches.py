"""What batches a model of a given context length trains on: the bigram takes mini-batches of pairs
and every loss form; longer contexts train full batch on counts."""

from __future__ import annotations

from bigramlab.errors import UserError


def check_batches(context: int, batch_size: int | None, loss_form: str) -> None:
    """Raise UserError where longer contexts are asked for batches other than the full counts
    (the pair forms index W by token: they are the bigram's)."""
    if context > 1 and (batch_size is not None or loss_form != "counts"):
        raise UserError(
            f"model.context={context} trains full batch on counts: set data.batch_size=null "
            "and model.loss_form=counts (mini-batches and the pair forms are the bigram's)"
        )
