"""Screenshot TensorBoard's dashboards of a finished run, served on 127.0.0.1, by headless Chromium.

    python scripts/tensorboard_screenshot.py RUN_DIR OUT_DIR [--dashboards custom_scalars images]

Needs Debian's `chromium` package (apt-get install chromium). Writes OUT_DIR/tensorboard_<name>.png.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.read() not in (b"", b"{}"):
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"error: TensorBoard did not answer at {url} within {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--dashboards", nargs="+", default=["custom_scalars", "images", "text"])
    parser.add_argument("--size", default="1500,1100", help="window width,height in pixels")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("error: chromium not found: install it (apt-get install chromium)")
    if not (args.run_dir / "tensorboard").is_dir():
        sys.exit(f"error: {args.run_dir} has no tensorboard/ folder: pass a bigramlab run dir")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(args.run_dir), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/data/plugin/scalars/tags")
        for dashboard in args.dashboards:
            out = args.out_dir / f"tensorboard_{dashboard}.png"
            with tempfile.TemporaryDirectory() as profile:
                subprocess.run(
                    [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     f"--window-size={args.size}", "--virtual-time-budget=20000",
                     f"--screenshot={out}", f"http://127.0.0.1:{port}/#{dashboard}"],
                    check=True, capture_output=True, timeout=120,
                )  # fmt: skip
            print(f"wrote {out}")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
