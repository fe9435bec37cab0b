"""The probe's kept results: one file per VM, replaced atomically, for the Cockpit page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rtlibvirt.errors import HostError
from rtlibvirt.probe import saved


def test_the_newest_result_of_each_vm_is_kept(kept_results: Path) -> None:
    path = saved.save("plc", {"virt_type": "qemu", "configurations": []}, now=1000.4)
    assert path == kept_results / "plc.json"
    assert json.loads(path.read_text()) == {
        "name": "plc",
        "measured_at": 1000,
        "virt_type": "qemu",
        "configurations": [],
    }
    saved.save("plc", {"virt_type": "kvm"}, now=2000)
    assert json.loads(path.read_text())["virt_type"] == "kvm"
    assert sorted(p.name for p in kept_results.iterdir()) == ["plc.json"]


@pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b", "", "x" * 201, "plc\n"])
def test_a_name_that_is_not_a_plain_file_name_is_not_kept(kept_results: Path, name: str) -> None:
    assert saved.path_for(name) is None
    with pytest.raises(HostError, match="not a plain file name"):
        saved.save(name, {})
    assert not kept_results.exists()


def test_an_unwritable_folder_is_one_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv(saved.RESULTS_ENV, str(blocker / "kept"))
    with pytest.raises(HostError, match="cannot keep the result"):
        saved.save("plc", {})
