from __future__ import annotations

import pytest

from rtlibvirt.config import units


@pytest.mark.parametrize(
    ("text", "kib"),
    [
        ("512MiB", 512 * 1024),
        ("2GiB", 2 * 1024 * 1024),
        ("1G", 1024 * 1024),
        ("1g", 1024 * 1024),
        ("1.5GiB", 1536 * 1024),
        ("4096KiB", 4096),
        ("4096K", 4096),
        ("1TiB", 1024**3),
        ("2048", 2048 * 1024),
        ("1024000KB", 1000000),
        (" 3 GiB ", 3 * 1024 * 1024),
    ],
)
def test_parse_size(text: str, kib: int) -> None:
    assert units.parse_size_kib(text) == kib


@pytest.mark.parametrize("text", ["", "GiB", "2 PiB", "2XB", "-1G", "1e3M", "1.0000001KiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(units.SizeError):
        units.parse_size_kib(text)


@pytest.mark.parametrize(
    ("kib", "text"),
    [(2 * 1024 * 1024, "2GiB"), (1536 * 1024, "1536MiB"), (1000, "1000KiB"), (1024**3, "1TiB")],
)
def test_format_size(kib: int, text: str) -> None:
    assert units.format_size_kib(kib) == text
    assert units.parse_size_kib(text) == kib
