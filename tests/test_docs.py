"""The documentation stands alone: every file it points at is in this repository.

Relative links in README.md and docs/*.md must name a file or folder that exists inside the
repository, and so must the Markdown files they mention by path in backticks.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
MARKDOWN_PATH = re.compile(r"`([\w./-]+\.md)`")


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_reference_is_inside_the_repository(page: Path) -> None:
    text = page.read_text(encoding="utf-8")
    targets = [t for t in LINK.findall(text) if not re.match(r"^(https?:|mailto:|#)", t)]
    outside = []
    for target in targets:
        path = (page.parent / target.split("#", 1)[0]).resolve()
        if not path.is_relative_to(ROOT) or not path.exists():
            outside.append(target)
    for mention in MARKDOWN_PATH.findall(text):
        if not any((base / mention).exists() for base in (ROOT, page.parent)):
            outside.append(mention)
    assert outside == [], f"{page.name} points outside the repository"
