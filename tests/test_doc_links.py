"""Every relative link and image in the README and docs/ leads to a file of the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def links(page: Path) -> list[str]:
    return [
        m[1] for m in LINK.finditer(page.read_text()) if not m[1].startswith(("http", "mailto:"))
    ]


def test_the_pages_have_links_to_check() -> None:
    assert "docs/cockpit.png" in links(REPO / "README.md")
    assert "docs/noise.md" in links(REPO / "README.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_exists(page: Path) -> None:
    missing = [t for t in links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"
