"""Throughput over time, end to end on the machine running the tests: the real storage and
network stages (fio on a scratch file, iperf3 to a server on 127.0.0.1) record series, and
each stage's evidence holds the PNG plot of them beside the parsed record."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]
# Three seconds of each tool, reporting every second (series_step_s); the scratch file is
# big enough that writing it takes more than two of them here, even on a quiet disk.
STAGES = {"storage": {"size_mib": 256, "runtime_s": 3}, "network": {"duration_s": 3}}


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (inv / "host_vars" / "localhost.yml").write_text(
        json.dumps({"vet_spec": {}, "vet_stages": STAGES}))
    return inv


def _plot(stage_dir: Path, record: str) -> Image.Image:
    [png] = stage_dir.glob(f"*-{record}_over_time.png")
    image = Image.open(png)
    image.load()
    return image


def test_storage_and_network_stages_attach_throughput_plots(tmp_path: Path) -> None:
    run_id = f"thr-{tmp_path.name[-12:]}"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-m", "storage or network",
         "--inventory", str(_inventory(tmp_path)), "--reports-dir", str(tmp_path / "reports"),
         "--run-id", run_id, "-p", "no:cacheprovider", "-p", "no:xdist", "-rs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]

    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        records = {r["name"]: json.loads(r["json"]) for r in store.records(run_id, "localhost")}
    fio, iperf3 = records["fio result"], records["iperf3 result"]
    assert len(fio["intervals"]) >= 2, fio["intervals"]  # what a curve needs
    assert fio["intervals"][0]["start_s"] == 0.0
    assert max(i["write_bytes_per_s"] for i in fio["intervals"]) > 0
    written = sum(i["write_bytes_per_s"] * (i["end_s"] - i["start_s"]) for i in fio["intervals"])
    assert abs(written - fio["jobs"][0]["write"]["io_bytes"]) < 1024  # the series adds up
    assert len(iperf3["intervals"]) >= 3, iperf3["intervals"]
    assert all(i["bits_per_second"] > 0 for i in iperf3["intervals"])

    host_dir = tmp_path / "reports" / "runs" / run_id / "localhost"
    assert _plot(host_dir / "storage", "fio_result").size == (800, 320)  # MiB/s
    assert _plot(host_dir / "network", "iperf3_result").size == (800, 580)  # Gbit/s, retrans.
    commands = "".join(p.read_text() for p in (host_dir / "storage").glob("*fio_--name*"))
    assert "--status-interval=1 " in commands
    # the plot sits in the Allure result of the stage's test, next to the record
    allure = [json.loads(p.read_text()) for p in
              (tmp_path / "reports" / "runs" / run_id / "allure-results").glob("*-result.json")]
    names = {a["name"].split("[")[0]: {att["name"] for att in a.get("attachments", [])}
             for a in allure}
    assert "fio result over time" in names["test_fio_verified_scratch_file"]
    assert "iperf3 result over time" in names["test_iperf3_throughput"]
    assert not list(Path("/var/tmp").glob(f"vet-{run_id}-*")), "scratch file left behind"
