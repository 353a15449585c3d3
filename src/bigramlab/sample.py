"""Sample words from a trained model.

python -m bigramlab.sample ckpt=<run dir>/checkpoints/last.ckpt n=20 seed=0
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from bigramlab.config import checkpoint_path
from bigramlab.errors import UserError
from bigramlab.model import load_checkpoint, sample_words

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="sample")
def main(cfg: DictConfig) -> None:
    try:
        if not isinstance(cfg.n, int) or cfg.n < 0:
            raise UserError(f"n={cfg.n!r} must be a whole number of words >= 0, e.g. n=20")
        W, itos = load_checkpoint(checkpoint_path(cfg))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    generator = torch.Generator().manual_seed(cfg.seed)
    for word in sample_words(W.softmax(dim=1), itos, cfg.n, generator, cfg.max_length):
        print(word)


if __name__ == "__main__":
    main()
