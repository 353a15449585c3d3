"""Fetch a file into the data cache once: checksum-verified, atomic, safe under concurrent runs."""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from bigramlab.errors import UserError
from bigramlab.writers.atomic import write_atomically

CHUNK = 1 << 16


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Return `dest`, downloading `url` into it first unless it holds the file with `sha256`.

    The download goes to a temporary file beside `dest` and is renamed over it only once its
    checksum matches, so `dest` is never partial or wrong. An exclusive lock on `dest.lock` makes
    concurrent callers (the jobs of a parallel sweep) wait for one download instead of racing; the
    lock file is removed again when the download fails, so a failed offline run leaves nothing.
    """
    dest = Path(dest)
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    lock_path = dest.with_name(dest.name + ".lock")
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Another process may have finished the download while we waited for the lock.
        if dest.is_file() and sha256_of(dest) == sha256:
            return dest
        try:
            write_atomically(dest, lambda tmp: _download(url, tmp, dest, sha256, timeout))
        except UserError:
            lock_path.unlink(missing_ok=True)
            raise
    return dest


def _download(url: str, tmp: Path, dest: Path, sha256: str, timeout: float) -> None:
    """`url` into `tmp`, checked against `sha256` (`dest` names the file in messages)."""
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                size = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=size, unit="B", unit_scale=True, desc=f"downloading {dest.name}"
                ) as bar:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        bar.update(len(chunk))
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise UserError(
                f"cannot download {url} ({reason}); without network access, put the file "
                f"at {dest} yourself (expected sha256 {sha256})"
            ) from e
    if digest.hexdigest() != sha256:
        raise UserError(
            f"download of {url} has sha256 {digest.hexdigest()}, expected {sha256}; "
            f"nothing was saved to {dest}: check the URL or the expected checksum"
        )
