"""scripts/make_corpus.py as a user runs it (in the test's process): a corpus of the source's
words, and one `error:` line for a bad command line, with nothing written."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import make_words
from tests.helpers import assert_one_error_line, run_in_process

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_corpus.py"


def make_corpus(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_in_process(str(SCRIPT), *args, cwd=cwd)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "source.txt"
    path.write_text("\n".join(make_words(200, seed=4)) + "\n")
    return path


def test_a_corpus_of_the_sources_characters_is_written_whole(tmp_path: Path, source) -> None:
    result = make_corpus(tmp_path, str(source), "out.txt", "--megabytes", "0.05", "--context", "2")
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "out.txt").read_text()
    assert text.endswith("\n") and 0 < len(text) <= 0.05 * 2**20
    assert set(text) <= set("abcdefghij\n")
    assert not (tmp_path / "out.txt.partial").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--context", "0"], "--context 0: give at least 1 character of context"),
        (["--megabytes", "0"], "--megabytes 0: give a size above 0"),
        (["--shorter", "2"], "--shorter 2: give a probability in [0, 1]"),
    ],
)
def test_bad_arguments_are_one_error_line(tmp_path: Path, source, args, message) -> None:
    result = make_corpus(tmp_path, str(source), "out.txt", *args)
    assert_one_error_line(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source.txt"]


def test_a_directory_as_output_is_refused_and_nothing_left(tmp_path: Path, source) -> None:
    (tmp_path / "dir").mkdir()
    result = make_corpus(tmp_path, str(source), "dir", "--megabytes", "0.01")
    assert_one_error_line(result, "dir is a directory: give a file name")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "source.txt"]
    assert list((tmp_path / "dir").iterdir()) == []


def test_an_existing_output_is_replaced_only_with_force(tmp_path: Path, source) -> None:
    (tmp_path / "out.txt").write_text("keep me\n")
    refused = make_corpus(tmp_path, str(source), "out.txt", "--megabytes", "0.01")
    assert_one_error_line(refused, "out.txt exists: add --force to replace it")
    assert (tmp_path / "out.txt").read_text() == "keep me\n"
    forced = make_corpus(tmp_path, str(source), "out.txt", "--megabytes", "0.01", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "out.txt").read_text() != "keep me\n"
