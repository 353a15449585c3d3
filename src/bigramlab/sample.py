"""Sample words from a trained model.

python -m bigramlab.sample ckpt=<run dir>/checkpoints/last.ckpt n=20 seed=0
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from bigramlab.models.checkpoint import load_checkpoint
from bigramlab.models.sampling import sample_words
from bigramlab.plumbing.cli import entry_point, exit_now
from bigramlab.plumbing.config import checkpoint_path, whole_number


def sample(cfg: DictConfig) -> None:
    whole_number(cfg, "n", 0, "n=20 (words to print)")
    whole_number(cfg, "seed", 0, "seed=0")
    if cfg.max_length is not None:
        whole_number(cfg, "max_length", 1, "max_length=200 (longer words are cut), or null")
    model = load_checkpoint(checkpoint_path(cfg)).model
    generator = torch.Generator().manual_seed(cfg.seed)
    for word in sample_words(model, cfg.n, generator, cfg.max_length):
        print(word)


main = entry_point("sample", sample)

if __name__ == "__main__":
    main()
    exit_now()
