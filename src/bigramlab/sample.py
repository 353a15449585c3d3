"""Sample words from a trained model.

python -m bigramlab.sample ckpt=<run dir>/checkpoints/last.ckpt n=20 seed=0
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from bigramlab.checkpoint import load_trained_model
from bigramlab.cli import entry_point
from bigramlab.config import checkpoint_path
from bigramlab.errors import UserError
from bigramlab.sampling import sample_words


def _whole(cfg: DictConfig, key: str, minimum: int, what: str) -> None:
    value = cfg[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key}={value!r} must be a whole number >= {minimum}: {what}")


def sample(cfg: DictConfig) -> None:
    _whole(cfg, "n", 0, "the number of words, e.g. n=20")
    _whole(cfg, "seed", 0, "e.g. seed=0")
    if cfg.max_length is not None:
        _whole(cfg, "max_length", 1, "the longest word printed whole, e.g. max_length=200, or null")
    model = load_trained_model(checkpoint_path(cfg))
    generator = torch.Generator().manual_seed(cfg.seed)
    for word in sample_words(model.W.softmax(dim=1), model.itos, cfg.n, generator, cfg.max_length):
        print(word)


main = entry_point("sample", sample)

if __name__ == "__main__":
    main()
