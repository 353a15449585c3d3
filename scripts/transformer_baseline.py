"""A transformer baseline on the same split as the one-hot models: makemore's default size.

    python scripts/transformer_baseline.py [--data data/names.txt] [--device cpu|cuda]
        [--max-steps 20000] [--eval-every 500] [--patience 6] [--json F]

The model is makemore's `Transformer` at its defaults (4 layers, 4 heads, 64-dimensional
embeddings, a block of the longest word + 1 positions; about 200K parameters): token and position
embeddings, pre-norm blocks of causal self-attention and a 4× GELU MLP, a final LayerNorm and a
linear head. Training as makemore's: AdamW (lr 5e-4, weight decay 0.01, betas 0.9/0.99), batches of
32 words, cross-entropy over every position up to and including the word's end; --dropout (none
in makemore) on the embeddings, the attention weights and each block's outputs, as nanoGPT's.

The data are the lecture split of the pipeline (bigramlab.data.vocab.split_words, seed 42,
0.8/0.1/0.1): trained on train, evaluated on the whole dev split every --eval-every steps, stopped
when dev has not improved for --patience evaluations (or at --max-steps), and read on test once,
with the weights of the best dev evaluation. NLLs are nats per character, the end of the word
included, as bigramlab's metrics.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bigramlab.data.corpora import read_lines
from bigramlab.data.vocab import Vocab, split_words


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.n_head, self.dropout = n_head, dropout
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.proj = nn.Sequential(nn.Linear(n_embd, n_embd), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(n_embd), nn.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.mlp = nn.Sequential(
            nn.Linear(n_embd, 4 * n_embd),
            nn.GELU(),
            nn.Linear(4 * n_embd, n_embd),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """Logits (B, T, V) of the next token at every position of token ids (B, T)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*[Block(n_embd, n_head, dropout) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        return self.head(self.ln_f(self.blocks(self.drop(self.wte(idx) + self.wpe(pos)))))


def encode(words: list[str], vocab: Vocab, block_size: int) -> tuple[Tensor, Tensor]:
    """makemore's layout: x = `.` w_1 … w_n then `.`s, y = w_1 … w_n `.` then -1 (ignored).
    (N, block_size) each."""
    stoi = vocab.stoi
    x = torch.zeros(len(words), block_size, dtype=torch.long)
    y = torch.full((len(words), block_size), -1, dtype=torch.long)
    for i, word in enumerate(words):
        ids = torch.tensor([stoi[c] for c in word], dtype=torch.long)
        x[i, 1 : len(word) + 1] = ids
        y[i, : len(word)] = ids
        y[i, len(word)] = 0
    return x, y


@torch.no_grad()
def mean_nll(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1024) -> float:
    """Nats per predicted character (end of word included) over every word of (x, y)."""
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch):
        logits = model(x[start : start + batch])
        total += float(
            F.cross_entropy(
                logits.flatten(0, 1).double(),
                y[start : start + batch].flatten(),
                ignore_index=-1,
                reduction="sum",
            )
        )
    model.train()
    return total / int((y >= 0).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/names.txt"))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=3407)  # makemore's
    parser.add_argument("--max-steps", type=int, default=20000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.0, help="makemore has none")
    parser.add_argument("--json", type=Path, help="write the result as JSON here")
    args = parser.parse_args()

    start = time.perf_counter()
    torch.manual_seed(args.seed)
    words = read_lines(args.data)
    vocab = Vocab.from_words(words)
    train, dev, test = split_words(words, (0.8, 0.1, 0.1), 42, "lecture")
    block_size = max(len(w) for w in words) + 1
    splits = {
        name: tuple(t.to(args.device) for t in encode(part, vocab, block_size))
        for name, part in (("train", train), ("dev", dev), ("test", test))
    }
    model = Transformer(
        len(vocab), block_size, args.n_layer, args.n_head, args.n_embd, args.dropout
    )
    model.to(args.device)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params} parameters, {len(train)}/{len(dev)}/{len(test)} words", flush=True)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, weight_decay=args.weight_decay, betas=(0.9, 0.99), eps=1e-8
    )
    x_train, y_train = splits["train"]
    generator = torch.Generator().manual_seed(args.seed)
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    step = 0
    while step < args.max_steps:
        index = torch.randint(len(x_train), (args.batch_size,), generator=generator)
        index = index.to(args.device)
        logits = model(x_train[index])
        loss = F.cross_entropy(logits.flatten(0, 1), y_train[index].flatten(), ignore_index=-1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        if step % args.eval_every == 0 or step == args.max_steps:
            dev_nll = mean_nll(model, *splits["dev"])
            elapsed = time.perf_counter() - start
            print(
                f"step {step}: train batch {loss.item():.4f}, dev {dev_nll:.4f} ({elapsed:.0f} s)"
            )
            if dev_nll < best[0]:
                best = (dev_nll, step, copy.deepcopy(model.state_dict()))
            elif step - best[1] >= args.patience * args.eval_every:
                break
    model.load_state_dict(best[2])
    result = {
        "model": f"transformer {args.n_layer} layers, {args.n_head} heads, {args.n_embd} dims",
        "dropout": args.dropout,
        "weight_decay": args.weight_decay,
        "parameters": n_params,
        "best_step": best[1],
        "steps": step,
        "train_nll": mean_nll(model, *splits["train"]),
        "dev_nll": best[0],
        "test_nll": mean_nll(model, *splits["test"]),
        "wall_s": round(time.perf_counter() - start, 1),
        "device": args.device,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
