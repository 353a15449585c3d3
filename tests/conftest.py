"""Shared fixtures: small generated corpora, a loopback HTTP server, and the real configs composed
the way `python -m bigramlab.train` composes them, with every output under tmp_path."""

from __future__ import annotations

import functools
import http.server
import json
import os
import random
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from bigramlab.counting.ngrams import NgramCounts
from bigramlab.models.learned import LearnedLM
from bigramlab.models.losses import Penalty
from bigramlab.plumbing import config
from bigramlab.train import train
from bigramlab.training.module import LanguageModelModule

CONFIG_DIR = Path(config.CONFIG_DIR)  # conf/, as the commands find it


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker and the processes it starts on a share of the cores of
    their own. A run's threads (threads: null, the cores its process may use) then fill that
    share and not the cores the other workers use too: oversubscribed, torch's threads wait on
    each other, and a run takes many times as long."""
    worker = getattr(config, "workerinput", None)
    if worker is None or not hasattr(os, "sched_setaffinity"):
        return
    index, count = int(worker["workerid"].removeprefix("gw")), int(worker["workercount"])
    cores = sorted(os.sched_getaffinity(0))
    mine = cores[index % len(cores) :: count]
    os.sched_setaffinity(0, mine)
    torch.set_num_threads(len(mine))


@pytest.fixture(autouse=True)
def sigint_as_it_was() -> Iterator[None]:
    """Each test leaves SIGINT as it found it. Lightning ignores SIGINT once it has caught a
    KeyboardInterrupt (its graceful shutdown) and leaves it ignored; every process this pytest
    worker started after that would inherit the ignore, and a Ctrl-C test's run would never stop."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def bigram_net(itos: str, init_seed: int = 2147483647) -> LearnedLM:
    """The lecture's bigram before training: W (V, V) ~ N(0, 1) from `init_seed`."""
    V = len(itos)
    return LearnedLM.for_data(itos, torch.arange(V), torch.zeros(V, V), init_seed=init_seed)


def bigram_module(itos: str, lr: float = 50, reg: float = 0.01) -> LanguageModelModule:
    """The Lightning module of the lecture's bigram, plain SGD at `lr`."""
    return LanguageModelModule(
        bigram_net(itos), functools.partial(torch.optim.SGD, lr=lr), Penalty(reg)
    )


def make_words(n: int, seed: int = 0, alphabet: str = "abcdefghij") -> list[str]:
    """n random lowercase 'names' of 1 to 8 letters, reproducible from seed."""
    rng = random.Random(seed)
    return ["".join(rng.choices(alphabet, k=rng.randint(1, 8))) for _ in range(n)]


def assert_same_counts(got: NgramCounts, expected: NgramCounts) -> None:
    """The same vocabulary, words per split, contexts and N of every split, bitwise."""
    assert got.vocab.itos == expected.vocab.itos and got.n_words == expected.n_words
    assert torch.equal(got.contexts, expected.contexts)
    dense, counted = got.dense_counts(), expected.dense_counts()
    assert dense.keys() == counted.keys()
    assert all(torch.equal(dense[s], counted[s]) for s in dense)


def lecture_pairs(words: list[str]) -> tuple[list[int], list[int]]:
    """xs, ys as the lecture builds them: a loop over words and their characters."""
    chars = sorted(set("".join(words)))
    stoi = {s: i + 1 for i, s in enumerate(chars)}
    stoi["."] = 0
    xs, ys = [], []
    for w in words:
        chs = [".", *w, "."]
        for a, b in zip(chs, chs[1:]):
            xs.append(stoi[a])
            ys.append(stoi[b])
    return xs, ys


def write_words_file(directory: Path) -> Path:
    """directory/words.txt: 300 words of make_words, one a line."""
    path = directory / "words.txt"
    path.write_text("\n".join(make_words(300)) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def words_file(tmp_path: Path) -> Path:
    return write_words_file(tmp_path)


def compose_config(name: str, overrides: list[str], tmp_path: Path) -> DictConfig:
    """The real conf/<name>.yaml with overrides, paths under tmp_path, Hydra's runtime set."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    OmegaConf.set_readonly(cfg, False)
    if "paths" in cfg:
        with open_dict(cfg):
            cfg.paths.root_dir = str(tmp_path)
            cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture
def train_config(tmp_path: Path, words_file: Path):
    """A function of overrides -> the composed train config on the small words file."""

    def make(*overrides: str) -> DictConfig:
        base = [
            "dataset=text_file",
            f"dataset.path={words_file}",
            "trainer.max_steps=20",
            "trainer.val_check_interval=10",
            "trainer.accelerator=cpu",
            "callbacks.progress_bar.refresh_rate=0",
        ]
        return compose_config("train", [*base, *overrides], tmp_path)

    return make


def train_and_load(cfg: DictConfig, out: Path) -> tuple[dict, torch.Tensor]:
    """Train a composed train config into `out`: (its metrics.json, its final W)."""
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
    train(cfg)
    metrics = json.loads((out / "metrics.json").read_text())
    W = torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]["net.W"]
    return metrics, W


@pytest.fixture
def http_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served directory): a real HTTP server on 127.0.0.1, on a free port."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass
