"""The plugin's promises, proven on real inner pytest runs (pytester + xdist).

3 hosts x 4 stages, one host failing in its second stage: every test of a host runs
on one worker, in pipeline order (not file order), the failed host's later stages
are skipped with the reason, the other hosts go on, and the store says so.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.store import Store

INVENTORY = """\
all:
  children:
    rack:
      hosts:
        node01: {vet_macs: ["52:54:00:00:00:01"]}
        node02: {vet_macs: ["52:54:00:00:00:02"]}
        node03: {vet_macs: ["52:54:00:00:00:03"]}
      vars:
        ansible_connection: local
"""

# File names sort opposite to the pipeline: the plugin must order by stage.
STAGE_FILES = {
    "test_a_storage.py": "storage",
    "test_b_cpu.py": "cpu",
    "test_c_spec.py": "spec",
    "test_d_inventory.py": "inventory",
}

STAGE_TEST = """\
import json, os, time
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.{stage}]


def test_{stage}(host):
    with open(os.environ["VET_TRACE"], "a") as trace:
        trace.write(json.dumps({{
            "host": host.name, "stage": "{stage}", "t": time.time(),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "pid": os.getpid(),
        }}) + "\\n")
    result = host.run("echo {stage} on $(hostname)")
    assert result.ok
    if host.name == "node02" and "{stage}" == "spec":
        assert False, "expected 4 disks, found 3"
"""


@pytest.fixture
def pipeline(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    pytester.makefile(".yml", hosts=INVENTORY)
    for name, stage in STAGE_FILES.items():
        pytester.makepyfile(**{name[:-3]: STAGE_TEST.format(stage=stage)})
    trace = pytester.path / "trace.jsonl"
    monkeypatch.setenv("VET_TRACE", str(trace))
    return trace


def _run(pytester: pytest.Pytester, *extra: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--inventory", "hosts.yml", "--run-id", "r1",
        "-m", "stage", "-p", "no:cacheprovider", "-rs", *extra,
    )


def _trace(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_three_hosts_on_three_workers_in_pipeline_order(
    pytester: pytest.Pytester, pipeline: Path
) -> None:
    result = _run(pytester, "-n", "3", "-v")
    result.assert_outcomes(passed=9, failed=1, skipped=2)

    trace = _trace(pipeline)
    by_host: dict[str, list[dict[str, object]]] = {}
    for entry in trace:
        by_host.setdefault(str(entry["host"]), []).append(entry)
    for name in ("node01", "node03"):
        entries = sorted(by_host[name], key=lambda e: float(str(e["t"])))
        assert [e["stage"] for e in entries] == ["inventory", "spec", "cpu", "storage"]
    assert [e["stage"] for e in by_host["node02"]] == ["inventory", "spec"]
    # every test of a host ran on one worker, and each host had its own worker
    workers = {name: {e["worker"] for e in entries} for name, entries in by_host.items()}
    assert all(len(w) == 1 for w in workers.values()), workers
    assert len({next(iter(w)) for w in workers.values()}) == 3, workers
    assert all(str(next(iter(w))).startswith("gw") for w in workers.values())

    # test ids read test_stage[host]; skips name the host and the failed stage
    result.stdout.fnmatch_lines([
        "*SKIPPED*test_b_cpu.py::test_cpu?node02?*",
    ])
    result.stdout.fnmatch_lines(["*host node02 failed stage spec (expected 4 disks, found 3)*"])

    with Store(pytester.path / "reports" / "vet.sqlite") as store:
        states = {h["name"]: h["state"] for h in store.hosts("r1")}
        assert states == {"node01": "Completed", "node02": "Failed", "node03": "Completed"}
        path = [t["to_state"] for t in store.transitions("r1", "node01")]
        assert path == ["Queued", "InventoryCheck", "SpecValidate", "CPUStress", "Storage",
                        "Reporting", "Completed"]
        failed = store.transitions("r1", "node02")[-1]
        assert failed["to_state"] == "Failed" and "expected 4 disks" in failed["reason"]
        outcomes = {(r["host"], r["stage"]): r["outcome"] for r in store.test_results("r1")}
        assert outcomes[("node02", "spec")] == "failed"
        assert outcomes[("node02", "cpu")] == "skipped"
        assert outcomes[("node03", "storage")] == "passed"
        assert store.run("r1")["status"] == "failed"  # type: ignore[index]


def test_serial_run_orders_stages_and_skips_after_failure(
    pytester: pytest.Pytester, pipeline: Path
) -> None:
    result = _run(pytester)
    result.assert_outcomes(passed=9, failed=1, skipped=2)
    order = [(e["host"], e["stage"]) for e in _trace(pipeline)]
    assert order == [
        ("node01", "inventory"), ("node01", "spec"), ("node01", "cpu"), ("node01", "storage"),
        ("node02", "inventory"), ("node02", "spec"),
        ("node03", "inventory"), ("node03", "spec"), ("node03", "cpu"), ("node03", "storage"),
    ]
    # the terminal summary is the per-host, per-stage table from the store
    result.stdout.fnmatch_lines(["*host*inventory*spec*cpu*storage*state*",
                                 "*node02*passed*FAILED*SKIPPED*SKIPPED*Failed*"])


def test_marker_selection_runs_part_of_the_pipeline(
    pytester: pytest.Pytester, pipeline: Path
) -> None:
    result = pytester.runpytest_subprocess(
        "-p", "harness.pytest_plugin", "--inventory", "hosts.yml", "--run-id", "r2",
        "-m", "cpu or storage", "--hosts", "node01:node03", "-p", "no:cacheprovider",
    )
    result.assert_outcomes(passed=4)
    assert sorted((e["host"], e["stage"]) for e in _trace(pipeline)) == [
        ("node01", "cpu"), ("node01", "storage"), ("node03", "cpu"), ("node03", "storage")]


def test_allure_results_carry_server_and_stage(
    pytester: pytest.Pytester, pipeline: Path
) -> None:
    _run(pytester, "-n", "2")
    results = pytester.path / "reports" / "runs" / "r1" / "allure-results"
    labels_of: dict[str, dict[str, str]] = {}
    for path in results.glob("*-result.json"):
        data = json.loads(path.read_text())
        labels = {lab["name"]: lab["value"] for lab in data["labels"]}
        labels_of[data["name"] + "/" + labels["server"]] = labels
        if data["status"] != "skipped":
            # each command run through host.run is a step with its output attached
            assert data["steps"] and data["steps"][0]["attachments"], data["name"]
    assert len(labels_of) == 12
    spec02 = labels_of["test_spec[node02]/node02"]
    assert spec02["parentSuite"] == "node02" and spec02["suite"] == "spec"


def test_stage_test_without_stage_marker_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yml", hosts=INVENTORY)
    pytester.makepyfile(test_bad="def test_x(host):\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "--inventory",
                                           "hosts.yml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bad.py::test_x?node01?: a test taking `host` needs*"])


def test_bad_inventory_is_a_usage_error_not_a_traceback(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yml", hosts="all:\n  hosts:\n    n1: {vet_macs: ['nope']}\n")
    pytester.makepyfile(test_x="")
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "--inventory",
                                           "hosts.yml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["*n1*vet_macs*nope*"])


def test_unknown_profile_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yml", hosts=INVENTORY)
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "--inventory",
                                           "hosts.yml", "--profile", "slow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--profile 'slow' is unknown; choose one of quick*"])


def test_missing_tool_fails_naming_the_package_without_traceback(
    pytester: pytest.Pytester,
) -> None:
    pytester.makefile(".yml", hosts=INVENTORY)
    pytester.makepyfile(test_tool="""
import pytest
pytestmark = [pytest.mark.stage, pytest.mark.cpu]

def test_needs_tool(host):
    host.require("vet-no-such-tool", package="vet-tool-pkg")
""")
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "--inventory",
                                           "hosts.yml", "--hosts", "node01", "-p",
                                           "no:cacheprovider")
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert ("ToolMissing: host node01: `vet-no-such-tool` is not installed; install the Debian "
            "package 'vet-tool-pkg'") in out
    assert "host.require(" not in out  # no traceback source lines


def test_misspelt_stage_parameter_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yml", hosts="""\
all:
  hosts:
    node01:
      ansible_connection: local
      vet_stages: {cpu: {duration: 60}}
""")
    result = pytester.runpytest_subprocess("-p", "harness.pytest_plugin", "--inventory",
                                           "hosts.yml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*host node01: vet_stages.cpu.duration is not a parameter of the cpu stage; "
        "known: duration_s*"])
