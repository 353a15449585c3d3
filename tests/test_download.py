"""Downloads into the data cache: cut short, raced, offline; nothing partial is ever left."""

from __future__ import annotations

import hashlib
import http.server
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bigramlab.data.corpora import Names
from bigramlab.errors import UserError
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
        "import sys; from bigramlab.data.corpora import Names; "
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
