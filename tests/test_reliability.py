"""Failures a user runs into, each with its message, its exit status and what is left on disk:
downloads cut short or raced, divergence, a run killed mid-training and resumed, determinism."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from bigramlab.corpora import Names, TextFile
from bigramlab.errors import UserError
from bigramlab.train import train
from bigramlab.vocab import Vocab, bigram_pairs
from tests.conftest import make_words


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[str, http.server.HTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/names.txt", server


def test_interrupted_download_leaves_no_file_under_the_final_name(tmp_path: Path) -> None:
    class CutShort(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"emma\n" * 100)  # then the connection closes early

        def log_message(self, *args: object) -> None:
            pass

    url, server = serve(CutShort)
    try:
        names = Names(url=url, sha256="0" * 64, cache_dir=str(tmp_path))
        with pytest.raises(UserError, match="cannot download|expected 0000"):
            names.load()
    finally:
        server.shutdown()
    assert list(tmp_path.iterdir()) == []  # neither a partial file nor the lock


def test_concurrent_fetches_download_once_and_both_get_the_whole_file(tmp_path: Path) -> None:
    content = "\n".join(make_words(20000)).encode()
    requests: list[int] = []

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            requests.append(1)
            self.send_response(200)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            for i in range(0, len(content), 4096):
                self.wfile.write(content[i : i + 4096])
                time.sleep(0.002)

        def log_message(self, *args: object) -> None:
            pass

    url, server = serve(Slow)
    sha = hashlib.sha256(content).hexdigest()
    code = (
        "import sys; from bigramlab.corpora import Names; "
        f"print(len(Names(url={url!r}, sha256={sha!r}, cache_dir={str(tmp_path)!r}).load()))"
    )
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    finally:
        server.shutdown()
    assert outputs == ["20000", "20000"]
    assert len(requests) == 1
    assert (tmp_path / "names.txt").read_bytes() == content


def test_single_word_unicode_and_a_huge_line_train(train_config, tmp_path: Path) -> None:
    cases = {
        "single.txt": "emma\n",
        "unicode.txt": "zoë\nrenée\nдима\n李明\nchloé\n" * 10,
        "huge.txt": "ab" * 500_000 + "\nba\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        metrics = train(train_config(f"dataset.path={path}", "trainer.max_steps=5",
                                     f"hydra.run.dir={tmp_path / name}-run"))  # fmt: skip
        assert metrics["status"] == "ok" and metrics["train_nll"] is not None, name


def test_characters_seen_only_outside_train_are_in_the_vocabulary(tmp_path: Path) -> None:
    words = ["ab"] * 30 + ["aq"]
    vocab = Vocab.from_words(words)
    assert "q" in vocab.itos
    xs, _ = bigram_pairs(["aq"], vocab)
    assert len(xs) == 3


def test_tiny_data_gives_null_val_and_test(train_config, tmp_path: Path) -> None:
    path = tmp_path / "two.txt"
    path.write_text("emma\nava\n")
    metrics = train(train_config(f"dataset.path={path}"))
    assert metrics["val_nll"] is None and metrics["test_nll"] is None
    saved = json.loads(Path(train_config().paths.output_dir, "metrics.json").read_text())
    assert saved["val_nll"] is None and saved["mle_val_nll"] is None


def test_same_config_and_seed_give_bitwise_identical_W(train_config, tmp_path: Path) -> None:
    weights = []
    for name in ("a", "b"):
        cfg = train_config("data.batch_size=16", "trainer.max_steps=15",
                           f"hydra.run.dir={tmp_path / name}")  # fmt: skip
        cfg.paths.output_dir = str(tmp_path / name)
        train(cfg)
        ckpt = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        weights.append(ckpt["state_dict"]["W"])
    assert torch.equal(weights[0], weights[1])


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bigramlab.train", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


@pytest.mark.slow
def test_divergence_stops_the_run_and_keeps_no_nan_checkpoint(tmp_path: Path, words_file: Path):
    result = run_cli("dataset=text_file", f"dataset.path={words_file}", "optim.lr=1e9",
                     "model.reg=0.01", "hydra.run.dir=run", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: training diverged at step ")
    assert "optim.lr=1e+09" in result.stderr and "model.reg=0.01" in result.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "diverged" and metrics["train_nll"] is None
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_W_without_duplicate_steps(tmp_path: Path) -> None:
    words = tmp_path / "words.txt"
    words.write_text("\n".join(make_words(2000, seed=9)) + "\n")
    common = ["dataset=text_file", f"dataset.path={words}", "trainer.max_steps=3000",
              "callbacks.checkpoint.every_n_train_steps=100",
              "callbacks.report.figures_every_n_steps=100000"]  # fmt: skip
    run_dir = tmp_path / "killed"
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bigramlab.train", *common, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not (ckpt.exists() and torch.load(ckpt, weights_only=True)["global_step"] >= 300):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = torch.load(ckpt, weights_only=True)["global_step"]
    assert 300 <= killed_at < 3000 and not (run_dir / "metrics.json").exists()

    resumed = run_cli(*common, f"ckpt_path={ckpt}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"run directory: {run_dir}" in resumed.stdout
    straight = run_cli(*common, f"hydra.run.dir={tmp_path / 'straight'}", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr[-2000:]

    W_resumed = torch.load(ckpt, weights_only=True)["state_dict"]["W"]
    W_straight = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt",
                            weights_only=True)["state_dict"]["W"]  # fmt: skip
    assert torch.equal(W_resumed, W_straight)
    events = EventAccumulator(str(run_dir / "tensorboard"), {"scalars": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("loss/total")]
    assert steps == list(range(3000))
    # The interrupted run's point at the checkpoint's step was purged with the rest after it, and
    # Lightning does not validate again before resuming: that one point is missing, none is twice.
    val_steps = [e.step for e in events.Scalars("nll/val")]
    assert val_steps == [step for step in range(0, 3001, 50) if step != killed_at]


def test_resume_from_a_checkpoint_of_other_data_is_refused(train_config, tmp_path: Path) -> None:
    first = train_config("trainer.max_steps=5")
    train(first)
    other = tmp_path / "other.txt"
    other.write_text("xyz\nzyx\n" * 10)
    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    with pytest.raises(UserError, match="trained on another vocabulary"):
        train(train_config(f"dataset.path={other}", f"ckpt_path={ckpt}"))


def test_text_file_corpus_is_reread_after_it_changes(tmp_path: Path) -> None:
    from bigramlab.datamodule import bigram_data

    path = tmp_path / "w.txt"
    path.write_text("ab\n")
    first = bigram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False)
    assert bigram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False) is first
    path.write_text("abc\nca\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert bigram_data(TextFile(str(path)), (1.0, 0.0, 0.0), 0, False).vocab.itos == ".abc"
