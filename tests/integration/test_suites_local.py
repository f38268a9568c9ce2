"""The real stages (suites/) on the machine running the tests: real lshw, stress-ng,
fio and iperf3, with durations cut short through the inventory's vet_stages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.store import Store

ROOT = Path(__file__).resolve().parents[2]

SHORT_STAGES = {
    "cpu": {"duration_s": 3, "stressors": ["cpu", "matrix"], "workers_per_stressor": 1},
    "memory": {"duration_s": 2, "workers": 1, "max_mib": 64},
    "storage": {"size_mib": 8, "runtime_s": 2},
    "network": {"duration_s": 1},
}


def _inventory(tmp_path: Path, spec: dict[str, object]) -> Path:
    inv = tmp_path / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(
        "all:\n  hosts:\n    localhost:\n      ansible_connection: local\n")
    (inv / "host_vars" / "localhost.yml").write_text(
        json.dumps({"vet_spec": spec, "vet_stages": SHORT_STAGES}))
    return inv


def _vet(tmp_path: Path, inv: Path, run_id: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-m", "stage",
         "--inventory", str(inv), "--reports-dir", str(tmp_path / "reports"),
         "--run-id", run_id, "-p", "no:cacheprovider", "-p", "no:xdist", "-rs", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def _vet_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "--reports-dir", str(tmp_path / "reports"), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )


def test_local_machine_passes_every_stage_with_evidence(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"cpu": {"threads": os.cpu_count()}})
    result = _vet(tmp_path, inv, "ok1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "6 passed" in result.stdout

    reports = tmp_path / "reports"
    with Store(reports / "vet.sqlite") as store:
        assert store.host_state("ok1", "localhost") is not None
        assert store.hosts("ok1")[0]["state"] == "Completed"
        names = {m["name"] for m in store.measurements("ok1", "localhost")}
        assert {"cpu_threads", "cpu_bogo_ops_per_s", "matrix_bogo_ops_per_s", "write_bw",
                "write_iops", "throughput"} <= names
        hardware = json.loads(store.records("ok1", "localhost")[0]["json"])
        assert hardware["cpu"]["threads"] == os.cpu_count()

    host_dir = reports / "runs" / "ok1" / "localhost"
    for stage in ("inventory", "spec", "cpu", "storage", "network"):
        assert any((host_dir / stage).iterdir()), f"no evidence for {stage}"
    # Each stage keeps the effective parameters it ran with (profile + inventory).
    [cpu_params] = (host_dir / "cpu").glob("*cpu_parameters*.json")
    assert json.loads(cpu_params.read_text())["duration_s"] > 0
    events = [json.loads(line) for line in (host_dir / "events.jsonl").read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert {"stage-start", "command-start", "line", "command-end", "measurement",
            "state"} <= kinds
    states = [e["to"] for e in events if e["kind"] == "state"]
    assert states[:2] == ["Queued", "InventoryCheck"] and "Network" in states
    # the stream ends with the host's final state, written after its fixture closed
    assert states[-2:] == ["Reporting", "Completed"]
    assert all(e["run"] == "ok1" and e["host"] == "localhost" for e in events)
    # scratch files are removed whatever happens
    assert not list(Path("/var/tmp").glob("vet-ok1-*"))

    report = _vet_cli(tmp_path, "report", "--run", "ok1", "--no-html")
    assert report.returncode == 0, report.stderr
    assert "localhost" in report.stdout and "Completed" in report.stdout
    summary = json.loads((reports / "runs" / "ok1" / "summary.json").read_text())
    assert summary["totals"] == {"hosts": 1, "passed": 1, "failed": 0, "incomplete": 0,
                                 "held": 0}
    stages = [s["stage"] for s in summary["hosts"][0]["stages"]]
    assert stages == ["inventory", "spec", "smart", "cpu", "memory", "storage", "network",
                      "gpu", "psu"]
    assert summary["run"]["params"]["hosts"]["localhost"]["cpu"]["duration_s"] == 3


def test_spec_mismatch_fails_spec_and_skips_later_stages(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"cpu": {"threads": 4096}, "memory": {"total_gib": 1}})
    result = _vet(tmp_path, inv, "bad1")
    assert result.returncode == 1, result.stdout[-3000:]
    assert "cpu.threads" in result.stdout
    assert "host localhost failed stage spec" in result.stdout

    reports = tmp_path / "reports"
    with Store(reports / "vet.sqlite") as store:
        diffs = {d["item"]: d["severity"] for d in store.spec_diffs("bad1", "localhost")}
        assert diffs["cpu.threads"] == "critical"
        assert diffs["memory.total_gib"] == "warning"  # more memory than expected
        outcomes = {r["stage"]: r["outcome"] for r in store.test_results("bad1")}
        assert outcomes == {"inventory": "passed", "spec": "failed", "smart": "skipped",
                            "cpu": "skipped", "memory": "skipped", "storage": "skipped",
                            "network": "skipped", "gpu": "skipped", "psu": "skipped"}
        assert store.hosts("bad1")[0]["state"] == "Failed"
    # the spec diff is attached to the Allure result as an HTML table
    results = reports / "runs" / "bad1" / "allure-results"
    attachments = [json.loads(p.read_text()) for p in results.glob("*-result.json")]
    spec_result = next(a for a in attachments if a["name"].startswith("test_hardware_matches"))
    assert spec_result["status"] == "failed"
    assert any(att["name"] == "spec diff" and att["type"] == "text/html"
               for att in spec_result["attachments"])

    status = _vet_cli(tmp_path, "status", "--run", "bad1")
    assert "FAILED" in status.stdout and "cpu.threads" in status.stdout


@pytest.mark.skipif(not (ROOT / "node_modules" / "allure").is_dir(),
                    reason="Allure 3 not installed (make setup installs it)")
def test_report_builds_single_file_html(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {})
    result = _vet(tmp_path, inv, "html1", "-m", "inventory or spec")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "no vet_spec" in result.stdout  # an empty spec is skipped with the reason
    report = _vet_cli(tmp_path, "report", "--run", "html1")
    assert report.returncode == 0, report.stderr
    html = tmp_path / "reports" / "html" / "report.html"
    assert html.is_file() and str(html) in report.stdout
    assert sorted(p.name for p in html.parent.iterdir()) == ["report.html"]


def test_report_without_a_store_is_a_clear_error(tmp_path: Path) -> None:
    result = _vet_cli(tmp_path, "report")
    assert result.returncode == 2
    assert "no run store at" in result.stderr and "Traceback" not in result.stderr
