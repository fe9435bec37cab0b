"""The probe's fixtures: Debian's userspace packages of the image, downloaded once a session.

They are fetched the way the probe fetches them (``apt-get download``, no
install), into a folder of the test session: `make test` on a clean machine
downloads them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rtlibvirt.probe import debs, image
from rtlibvirt.probe.debs import Entry

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def userspace_debs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("debs")
    found = {}
    for name in image.USERSPACE:
        package, _ = debs.candidate(name)
        found[name] = debs.download(package, folder)
    return found


@pytest.fixture(scope="session")
def userspace_trees(userspace_debs: dict[str, Path]) -> list[dict[str, Entry]]:
    return [debs.read(path, image._wanted) for path in userspace_debs.values()]


@pytest.fixture(autouse=True)
def kept_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every probe of these tests keeps its result in the test's folder, not the host's."""
    folder = tmp_path / "kept"
    monkeypatch.setenv("RTLIBVIRT_PROBE_RESULTS", str(folder))
    return folder
