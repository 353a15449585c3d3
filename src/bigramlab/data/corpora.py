"""Corpora: where the words come from, behind one small interface.

A corpus is a list of words (names, dictionary words, lines of a file). It is its config: a frozen,
hashable dataclass that Hydra instantiates from conf/dataset/ and that caches can key on. Every
corpus has

    name          how messages and logs name it (a file's path, or the data set's name)
    lowercase     whether its text is lower-cased when read
    stamp()       what changes when its content may have changed (a file's mtime and size)
    prepare()     makes it readable (downloads it, checks its file), or raises a UserError: run
                  once before training starts, so that a missing file is reported at once
    byte_chunks(part, parts)   its UTF-8 text in pieces of whole lines (for counting without
                  holding it): the lines that begin in part `part` of `parts` equal byte ranges
                  (all of it by default), so that each process of a run reads its own
    load()        its words, a list of str

To add a data set: a dataclass with these members here, and a conf/dataset/<name>.yaml naming it.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from bigramlab.data.download import fetch
from bigramlab.errors import BadLine, UserError

BOUNDARY = "."  # the word-boundary token; no word may contain it
# Pieces of 2 MiB: counting holds one piece, not the corpus. A piece's per-event int64 arrays
# (16 MiB) then stay below glibc's largest mmap threshold (32 MiB), so the heap hands the same
# memory to the next piece instead of mapping fresh pages for each (docs/benchmark.md).
CHUNK_BYTES = 1 << 21


class Corpus(Protocol):
    name: str
    lowercase: bool

    def stamp(self) -> tuple[int, int] | None: ...

    def prepare(self) -> None: ...

    def byte_chunks(self, part: int = 0, parts: int = 1) -> Iterator[bytes]: ...

    def load(self) -> list[str]: ...


@functools.cache
def _english_bytes() -> bytes:
    return ("\n".join(_english_words()) + "\n").encode()


@functools.cache
def _english_words() -> tuple[str, ...]:
    """Read once per process: counting reads a corpus twice, and sweeps train on it again."""
    from english_words import get_english_words_set

    # A set has no stable order across processes; sort so splits are reproducible.
    return tuple(sorted(get_english_words_set(["web2"], lower=True, alpha=True)))


@dataclass(frozen=True)
class EnglishWords:
    """The web2 word list of the `english-words` package: lowercase, alphabetic, ~234k words."""

    name: str = "words"
    lowercase: bool = False

    def stamp(self) -> None:
        return None

    def prepare(self) -> None:
        _english_words()

    def byte_chunks(self, part: int = 0, parts: int = 1) -> Iterator[bytes]:
        return read_chunks(io.BytesIO(_english_bytes()), part, parts)

    def load(self) -> list[str]:
        return list(_english_words())


@dataclass(frozen=True)
class Names:
    """makemore's names.txt, downloaded once into `cache_dir` and verified against `sha256`."""

    url: str
    sha256: str
    cache_dir: str
    filename: str = "names.txt"
    name: str = "names"
    lowercase: bool = False

    def path(self) -> Path:
        return fetch(self.url, Path(self.cache_dir) / self.filename, self.sha256)

    def stamp(self) -> None:
        return None  # checksum-verified: the content cannot change

    def prepare(self) -> None:
        self.path()

    def byte_chunks(self, part: int = 0, parts: int = 1) -> Iterator[bytes]:
        return read_file_chunks(self.path(), part, parts)

    def load(self) -> list[str]:
        return read_lines(self.path(), name=self.name)


@dataclass(frozen=True)
class TextFile:
    """Any UTF-8 text file, one word a line. Each line is stripped of leading and trailing
    whitespace, blank lines are skipped, and spaces or tabs inside a line are characters of the
    word (of the vocabulary)."""

    path: str
    lowercase: bool = False

    @property
    def name(self) -> str:
        return self.path

    def prepare(self) -> None:
        _check_file(Path(self.path))

    def stamp(self) -> tuple[int, int] | None:
        """(mtime, size), so that a file edited between two jobs of a sweep is read again."""
        if not Path(self.path).is_file():
            return None
        stat = Path(self.path).stat()
        return stat.st_mtime_ns, stat.st_size

    def byte_chunks(self, part: int = 0, parts: int = 1) -> Iterator[bytes]:
        return read_file_chunks(Path(self.path), part, parts)

    def load(self) -> list[str]:
        return read_lines(Path(self.path), self.lowercase)


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"data file {path} does not exist: check dataset.path")
    if not path.is_file():
        raise UserError(f"data path {path} is not a file: point dataset.path at a text file")


def read_file_chunks(path: Path, part: int = 0, parts: int = 1) -> Iterator[bytes]:
    """read_chunks of a file; a file that cannot be read is a UserError naming it."""
    _check_file(path)
    try:
        with open(path, "rb") as f:
            yield from read_chunks(f, part, parts)
    except OSError as e:
        raise UserError(f"cannot read {path} ({e.strerror}): check its permissions") from None


def read_chunks(f: BinaryIO, part: int = 0, parts: int = 1) -> Iterator[bytes]:
    """The lines of a seekable binary stream that begin in bytes [size·part/parts,
    size·(part+1)/parts), in pieces of about CHUNK_BYTES, each ending at a line end (or the
    stream's end). The parts of 0 … parts-1 hold every line once, in order."""
    size = f.seek(0, io.SEEK_END)
    start, stop = size * part // parts, size * (part + 1) // parts
    f.seek(max(start - 1, 0))
    if start > 0 and f.read(1) != b"\n":
        f.readline()  # the line under way at `start` began in the part before
    while f.tell() < stop and (chunk := f.read(min(CHUNK_BYTES, stop - f.tell()))):
        yield chunk if chunk.endswith(b"\n") else chunk + f.readline()


def read_lines(path: Path, lowercase: bool = False, name: str | None = None) -> list[str]:
    """The words of a UTF-8 file (see decode_words), at least one; `name` names it in messages."""
    name = name or str(path)
    _check_file(path)
    words = decode_words(path.read_bytes(), name, first_line=1, lowercase=lowercase)
    if not words:
        raise UserError(f"{name} has no words (it is empty or only blank lines)")
    return words


def decode_words(raw: bytes, source: str, first_line: int, lowercase: bool) -> list[str]:
    """The words of `raw`, whole lines of UTF-8 text, the first of them line `first_line`: every
    non-blank line stripped of surrounding whitespace (`\\r` included)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = first_line + raw.count(b"\n", 0, e.start)
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1)
        raise BadLine(
            source,
            line,
            f"is not valid UTF-8 ({e.reason} at byte {column} of the line): convert the file to "
            "UTF-8",
        ) from None
    if lowercase:
        text = text.lower()  # no character lowercases to whitespace or to the boundary token
    if (at := text.find(BOUNDARY)) >= 0:
        line = first_line + text.count("\n", 0, at)
        raise BadLine(
            source, line, f"contains '{BOUNDARY}', the word-boundary token: remove it from the data"
        )
    return [word for word in map(str.strip, text.split("\n")) if word]
