"""A real TensorBoard server over a finished run: its HTTP API serves the tags and the hparams."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bigramlab.train import train
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def request(url: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers), timeout=10) as r:
        return json.loads(r.read())


def test_tensorboard_serves_scalars_and_the_hparams_session(train_config) -> None:
    cfg = train_config("trainer.max_steps=20")
    metrics = train(cfg)
    run_dir = Path(cfg.paths.output_dir)
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                tags = request(f"{base}/data/plugin/scalars/tags")
                if tags:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "tensorboard did not answer in 90 s"
            time.sleep(0.5)
        (run_tags,) = tags.values()
        for tag in ("loss/total", "nll/val", "counted/nll_val", "compare/kl_train", "hp/val_nll"):
            assert tag in run_tags
        experiment = request(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert {h["name"] for h in experiment["hparamInfos"]} >= {"lr", "reg", "alpha", "dataset"}
        groups = request(
            f"{base}/data/plugin/hparams/session_groups",
            {
                "experimentName": "",
                "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
                "colParams": [],
                "startIndex": 0,
                "sliceSize": 10,
            },
        )
        (group,) = groups["sessionGroups"]
        assert group["hparams"]["lr"] == 50 and group["hparams"]["dataset"] == "text_file"
        values = {m["name"]["tag"]: m for m in group["metricValues"]}
        assert values["hp/val_nll"]["value"] == pytest.approx(metrics["val_nll"], abs=1e-5)
        assert values["hp/val_nll"]["trainingStep"] == 20
    finally:
        server.terminate()
        server.wait(timeout=30)
