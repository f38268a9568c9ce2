"""The smart, memory, gpu and psu stages and the cpu and network additions, run by pytest
as an operator runs them, on the machine running the tests (inventory like
inventory/local). This machine has a virtio disk (no SMART), no GPU and no BMC: those
stages are skipped, each with its reason; cpu, memory and network pass.

The SMART comparison after the stress stages (harness/smart_snapshot.py) is exercised
end to end here too, with recorded outputs of a QEMU NVMe disk standing in for smartctl
(its critical warning raised between the two snapshots) and a recorded lsblk listing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness.store import Store
from tests.fixtures.recorded_tools import DATA, RecordedTools, Rule

ROOT = Path(__file__).resolve().parents[2]
PROBES = DATA / "probes"
STAGES = {
    "cpu": {"duration_s": 2, "stressors": ["cpu"], "workers_per_stressor": 1,
            "temperature_sample_s": 1},
    "memory": {"duration_s": 2, "workers": 1, "max_mib": 64},
    "network": {"duration_s": 1},
    "smart": {"self_test": "none"},
}


def _inventory(tmp_path: Path, spec: dict[str, object]) -> Path:
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (inv / "host_vars" / "localhost.yml").write_text(
        json.dumps({"vet_spec": spec, "vet_stages": STAGES}))
    return inv


def _vet(tmp_path: Path, inv: Path, run_id: str, marks: str,
         env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-m", marks,
         "--inventory", str(inv), "--reports-dir", str(tmp_path / "reports"),
         "--run-id", run_id, "-p", "no:cacheprovider", "-p", "no:xdist", "-rs"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=env,
    )


def _own_mac() -> tuple[str, str]:
    """(interface, MAC) of this machine's first interface with a real MAC."""
    for path in sorted(Path("/sys/class/net").iterdir()):
        mac = (path / "address").read_text().strip()
        if path.name != "lo" and mac != "00:00:00:00:00:00" and \
                (path / "operstate").read_text().strip() == "up":
            return path.name, mac
    raise AssertionError("no interface with a MAC is up on this machine")


def test_new_stages_here_pass_or_skip_with_their_reasons(tmp_path: Path) -> None:
    interface, mac = _own_mac()
    inv = _inventory(tmp_path, {"nics": [{"mac": mac}]})
    result = _vet(tmp_path, inv, "st1", "smart or cpu or memory or network or gpu or psu")
    out = result.stdout
    assert result.returncode == 0, out[-3000:] + result.stderr[-2000:]
    assert "no disk answers SMART: /dev/" in out  # this machine's disks are virtio
    assert "no GPU expected (vet_spec.gpus is empty) and none found" in out
    assert "no BMC: no IPMI device on the host" in out
    assert "not ipmi, so there is no BMC address" in out

    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        outcomes = {(r["stage"], r["nodeid"].split("::")[1].split("[")[0]): r["outcome"]
                    for r in store.test_results("st1")}
        assert outcomes == {
            ("smart", "test_every_disk_reports_healthy"): "skipped",
            ("smart", "test_self_test"): "skipped",
            ("cpu", "test_stress_with_verification"): "passed",
            ("memory", "test_memory_stress_with_verification"): "passed",
            ("network", "test_expected_nics_have_link"): "passed",
            ("network", "test_iperf3_throughput"): "passed",
            ("gpu", "test_gpus_healthy_under_load"): "skipped",
            ("psu", "test_power_supplies"): "skipped"}
        assert store.hosts("st1")[0]["state"] == "Completed"
        names = {m["name"] for m in store.measurements("st1", "localhost")}
        assert {"tested_memory", "vm_bogo_ops_per_s", "cpu_bogo_ops_per_s",
                "throughput"} <= names
        records = {r["name"]: json.loads(r["json"]) for r in store.records("st1", "localhost")}
        assert records["NIC links"]["verdict"] == "healthy"
        assert f"NIC {interface}: link up" in records["NIC links"]["findings"][0]["reason"]
        assert records["memory error judgement"]["edac"]["inconclusive"] is True  # no EDAC
        assert "temperatures" in records

    host_dir = tmp_path / "reports" / "runs" / "st1" / "localhost"
    events = [json.loads(line) for line in (host_dir / "events.jsonl").read_text().splitlines()]
    progress = [(e["stage"], e["percent"]) for e in events if e["kind"] == "progress"]
    assert ("cpu", 0.0) in progress and ("cpu", 100.0) in progress
    assert ("memory", 0.0) in progress and ("memory", 100.0) in progress
    assert "progress" not in out  # the terminal shows pytest's own output only
    assert (host_dir / "cpu").is_dir() and any(
        "kernel_log_during_the_stage" in p.name for p in (host_dir / "cpu").iterdir())
    assert not list(Path("/tmp").glob("vet-st1-*")), "a scratch file was left on the host"


def _smart_tools(tmp_path: Path, after: Path) -> dict[str, str]:
    """smartctl and lsblk stand-ins: a QEMU guest's NVMe and SATA disks (recorded there);
    the NVMe disk reads `after` from the second `smartctl -x` on."""
    tools = RecordedTools(tmp_path / "recorded")
    tools.add("lsblk", Rule("-J", (PROBES / "lsblk-qemu.json",)))
    tools.add("smartctl",
              Rule("--scan-open", (PROBES / "smartctl-qemu-scan-open.json",)),
              Rule("-x -j -d nvme /dev/nvme0", (PROBES / "smartctl-qemu-nvme-healthy.json", after)),
              Rule("-x -j -d sat /dev/sda", (PROBES / "smartctl-qemu-sata.json",), exit_status=4))
    return dict(os.environ, PATH=f"{tools.bin}:{os.environ['PATH']}")


def test_smart_counters_that_grew_during_the_stress_fail_the_host(tmp_path: Path) -> None:
    env = _smart_tools(tmp_path, PROBES / "smartctl-qemu-nvme-critical12.json")
    result = _vet(tmp_path, _inventory(tmp_path, {}), "sg1", "smart or cpu", env)
    out = result.stdout
    assert result.returncode == 1, out[-3000:] + result.stderr[-2000:]
    assert "ERROR at teardown of test_stress_with_verification" in out
    assert ("SMART counters grew during the stress stages (compared with the smart stage's "
            "snapshot): /dev/nvme0 (QEMU NVMe Ctrl, serial VET-QEMU-NVME0): NVMe critical "
            "warning bits appeared during the test (0x0c") in out

    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        host = store.hosts("sg1")[0]
        assert (host["state"], host["stage"]) == ("Failed", "smart")
        assert host["reason"].startswith("smart (after stress): SMART counters grew")
        after = [r for r in store.test_results("sg1") if r["nodeid"].endswith(
            "::smart-after-stress")]
        assert [(r["stage"], r["outcome"]) for r in after] == [("smart", "failed")]
        names = [r["name"] for r in store.records("sg1", "localhost")]
        assert {"SMART snapshot before stress", "SMART snapshot after stress",
                "SMART before/after comparison"} <= set(names)
    evidence = tmp_path / "reports" / "runs" / "sg1" / "localhost" / "smart-after-stress"
    assert any("smartctl_-x_-j_-d_nvme_dev_nvme0" in p.name for p in evidence.iterdir())
    events = [json.loads(line) for line in (evidence.parent / "events.jsonl").open()]
    kinds = [e["kind"] for e in events]
    end = events[kinds.index("smart-after-stress-end")]  # the check's end, before teardown
    assert kinds.index("smart-after-stress") < kinds.index("smart-after-stress-end")
    assert end["verdict"] == "failing" and end["duration_s"] >= 0


def test_smart_comparison_passes_when_nothing_grew_and_needs_a_stress(tmp_path: Path) -> None:
    env = _smart_tools(tmp_path, PROBES / "smartctl-qemu-nvme-healthy.json")
    inv = _inventory(tmp_path, {})
    result = _vet(tmp_path, inv, "sg2", "smart or cpu", env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    alone = _vet(tmp_path, inv, "sg3", "smart", env)  # no stress stage: nothing to compare
    assert alone.returncode == 0, alone.stdout[-3000:]
    with Store(tmp_path / "reports" / "vet.sqlite") as store:
        assert store.hosts("sg2")[0]["state"] == "Completed"
        rows = [(r["run_id"], r["stage"], r["outcome"]) for r in store.query(
            "SELECT * FROM test_results WHERE nodeid LIKE '%::smart-after-stress'")]
        assert rows == [("sg2", "smart", "passed")]
