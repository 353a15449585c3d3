"""README.md and docs/ are a manual of today's project: every relative link and image resolves,
and no page (nor the code, configs and scripts) tells history, which CHANGELOG.md holds."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_image_resolves(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+://|mailto:|#", target):
            continue
        path = target.split("#")[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert missing == []


HISTORY = re.compile(r"this session|since 20[0-9]{2}|last (run|session)|HEAD [0-9a-f]{7}", re.I)


def test_no_page_code_or_config_tells_history() -> None:
    files = [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")]
    for folder, pattern in (("src", "*.py"), ("src", "*.yaml"), ("scripts", "*")):
        files += [p for p in (ROOT / folder).rglob(pattern) if p.is_file()]
    found = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in files
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1)
        if HISTORY.search(line)
    ]
    assert found == []


def test_the_readme_is_a_short_manual_with_a_link_to_every_page() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = set(LINK.findall(readme))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")} | {"CHANGELOG.md"}
    assert pages <= linked
