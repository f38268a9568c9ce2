"""`vet lab down` closes the holds of its guests: they are gone with the lab, and a held
host would make the next run (`make demo` again) refuse to start."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.image import ImageArtifacts
from harness.store import Store
from tests.fixtures.lab import guest, lab_for

pytestmark = pytest.mark.lab


def test_lab_down_closes_its_guests_holds_only(live_image: ImageArtifacts,
                                               tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    with lab_for([guest("vm-held", 11, power="qemu")], live_image) as lab:
        with Store(reports / "vet.sqlite") as store:
            store.start_run("r1", "quick", str(lab.inventory))
            for host in ("vm-held", "rack-node"):  # rack-node: not a guest of this lab
                store.register_host("r1", host)
                store.add_hold("r1", host, stage="spec", reason="0.5 GiB found",
                               opened_at=time.time(), expires_at=time.time() + 3600)
        down = subprocess.run(
            [sys.executable, "-m", "harness.cli", "--reports-dir", str(reports), "lab", "down",
             "--inventory", str(lab.inventory)],
            capture_output=True, text=True, timeout=120, env=dict(os.environ))
        assert down.returncode == 0, down.stderr
        assert "closed the hold on vm-held (run r1)" in down.stdout
        with Store(reports / "vet.sqlite") as store:
            still = [h["host"] for h in store.open_holds()]
            [closed] = store.query("SELECT * FROM holds WHERE host = 'vm-held'")
    assert still == ["rack-node"]
    assert closed["released_at"] is not None and closed["released_by"]
