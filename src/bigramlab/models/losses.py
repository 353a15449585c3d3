"""The learned model's loss: logits = one_hot(x) @ W, P_W(·|x) = softmax(logits) (W: (V, V)).

    objective = NLL + reg · mean(W²),   NLL = −mean log P_W(y|x) over the bigrams (x, y)

Three exact forms of the summed data NLL (`model.loss_form`), from the lecture's to the cheapest:

    onehot  one_hot(x) @ W, exp, normalise, −log p[y]   O(n·V²) a step, n = bigrams in the batch
    index   rows of W by index, cross_entropy              O(n·V)
    counts  −Σ N ⊙ log_softmax(W), N the batch's bigram    O(V²) given N, O(n) to count a mini-batch
            counts (the sufficient statistics)

Pure tensor functions, no Lightning. With a context of k tokens instead of one, x indexes the
contexts (rows of W) and nothing here changes but the number of rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from bigramlab.errors import UserError
from bigramlab.models.nll import seen_counts

if TYPE_CHECKING:
    from bigramlab.models.learned import LearnedLM

LOSS_FORMS = ("onehot", "index", "counts")


def check_loss_form(loss_form: str) -> None:
    """Raise UserError unless `loss_form` is one of LOSS_FORMS."""
    if loss_form not in LOSS_FORMS:
        raise UserError(
            f"model.loss_form={loss_form!r} is unknown: choose one of {', '.join(LOSS_FORMS)}"
        )


def nll_sum_onehot(W: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """The lecture's code, literally, summed instead of averaged.  W: (V, V), xs, ys: (n,) -> ()."""
    xenc = F.one_hot(xs, num_classes=W.shape[0]).float()
    logits = xenc @ W
    counts = logits.exp()
    probs = counts / counts.sum(1, keepdims=True)
    return -probs[torch.arange(len(ys), device=ys.device), ys].log().sum()


def nll_sum_index(W: Tensor, xs: Tensor, ys: Tensor) -> Tensor:
    """one_hot(x) @ W is row x of W: pick rows by index, then cross-entropy."""
    return F.cross_entropy(F.embedding(xs, W), ys, reduction="sum")


def nll_sum_counts(W: Tensor, counts: Tensor) -> Tensor:
    """−Σ_ij N[i, j] · log_softmax(W)[i, j]: the summed NLL from the counts N (V, V) alone.

    N sparse (a torch sparse COO tensor, as longer contexts are counted): the same sum over the
    n-grams seen, −Σ N[i, j] · (W[i, j] − logsumexp_j' W[i, j']), with no (C, V) tensor of counts
    or of products beside W."""
    if counts.is_sparse:
        rows, tokens, n = seen_counts(counts)
        return SeenNLL.apply(W, rows, tokens, n.to(W.dtype))
    return -(counts * W.log_softmax(dim=1)).sum()


class SeenNLL(torch.autograd.Function):
    """−Σ n · (W[r, t] − logsumexp_j W[r, j]) over the seen n-grams (r, t, n) (three (m,)
    tensors) of logits W (C, V), and its gradient

        ∂/∂W[r, j] = g · (N_r · softmax(W[r])[j] − N[r, j]),   N_r = Σ_t N[r, t],

    laid out as one (C, V) tensor that the backward works on in place (autograd's own backward of
    the same expression holds three or four at once; docs/benchmark.md has what that is worth).
    The same operations in the same order as autograd's: the same loss and gradient, bit for
    bit."""

    @staticmethod
    def forward(ctx: Any, W: Tensor, rows: Tensor, tokens: Tensor, n: Tensor) -> Tensor:
        log_normalizer = W.logsumexp(dim=1)
        ctx.save_for_backward(W, log_normalizer, rows, tokens, n)
        return -(n * (W[rows, tokens] - log_normalizer[rows])).sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:
        W, log_normalizer, rows, tokens, n = ctx.saved_tensors
        weighted = n * grad
        row_weight = log_normalizer.new_zeros(len(log_normalizer))
        row_weight.index_put_((rows,), weighted, accumulate=True)
        grad_W = (W - log_normalizer[:, None]).exp_().mul_(row_weight[:, None])
        return grad_W.index_put_((rows, tokens), -weighted, accumulate=True), None, None, None


def penalty(W: Tensor, reg: float, row_scale: Tensor | None = None) -> Tensor:
    """reg · Σ_r s_r ΣW[r]²/V² for W (R, V), s_r = row_scale (R,) or 1: the L2 term of the
    objective (what `reg > 0` adds, like smoothing α > 0). For the bigram's (V, V) W it is
    reg · mean(W²), the lecture's; at longer contexts every weight keeps the bigram's penalty
    whatever the number of rows, so that one `reg` means the same at every order (a mean over rows
    would weaken it as rows grow). row_scale: a penalty per row (per suffix length,
    model.reg_by_length; skip rows, model.reg_skip).

    Summed as each row's squared norm: no (R, V) temporary in the forward and one (the gradient)
    in the backward, where W**2 makes several (R, V) copies, which count at the largest W."""
    row_squares = torch.linalg.vector_norm(W, dim=1).square()
    if row_scale is not None:
        row_squares = row_squares * row_scale
    return reg * row_squares.sum() / W.shape[1] ** 2


@dataclass(frozen=True)
class Penalty:
    """The objective's L2 term, reg · Σ_r s_r ΣW[r]²/V² (`penalty`), with each row's multiplier s_r
    from the net (LearnedLM.penalty_scale): `by_length[j]` for the rows of suffixes of j tokens
    (model.reg_by_length), `multipliers[kind]` for the skip rows and each family's
    (model.reg_skip, model.reg_<family>); 1 where not given."""

    reg: float = 0.01
    by_length: Sequence[float] | None = None
    multipliers: Mapping[str, float] = field(default_factory=dict)

    def row_scale(self, net: LearnedLM) -> Tensor | None:
        """s (R,) for the rows of `net`, None where every row has the same penalty."""
        by_length = None if self.by_length is None else [float(x) for x in self.by_length]
        return net.penalty_scale(by_length, {k: float(v) for k, v in self.multipliers.items()})

    def __call__(self, W: Tensor, row_scale: Tensor | None = None) -> Tensor:
        return penalty(W, self.reg, row_scale)
