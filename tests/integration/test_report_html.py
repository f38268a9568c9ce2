"""build_html_report against the real Allure 3 CLI, on results from a real pytest run.

Skipped only when the Allure CLI or a suitable Node.js is not installed (`make setup`
installs both); every other failure is a failure.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.report_html import ReportError, build_html_report, find_allure, make_self_contained


def _allure_missing() -> str | None:
    try:
        find_allure()
    except ReportError as exc:
        return str(exc)
    return None


_MISSING = _allure_missing()
needs_allure = pytest.mark.skipif(
    _MISSING is not None, reason=f"Allure 3 report tooling not installed: {_MISSING}"
)

SAMPLE_TESTS = '''
import allure


def test_disk_smart_ok():
    allure.dynamic.parent_suite("burn-in")
    allure.dynamic.suite("storage")
    allure.dynamic.label("host", "node-a01")
    allure.attach("SMART overall-health: PASSED", name="smartctl output",
                  attachment_type=allure.attachment_type.TEXT)
    assert True


def test_memory_ecc_errors():
    allure.dynamic.parent_suite("burn-in")
    allure.dynamic.suite("memory")
    allure.dynamic.label("host", "node-a01")
    corrected = 3
    assert corrected == 0, "DIMM_A1 reported corrected ECC errors"
'''

# d("data/test-results/<id>.json","<base64>") calls hold the report's data in
# single-file mode.
_DATA_ENTRY = re.compile(r'd\("([^"]+)","([A-Za-z0-9+/=]*)"\)')


def report_data(html: str) -> dict[str, bytes]:
    return {path: base64.b64decode(blob) for path, blob in _DATA_ENTRY.findall(html)}


@pytest.fixture(scope="module")
def allure_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results of a real pytest session with allure-pytest: one pass, one failure."""
    work = tmp_path_factory.mktemp("sample-run")
    (work / "test_sample_burnin.py").write_text(SAMPLE_TESTS)
    results = work / "allure-results"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"--alluredir={results}", "test_sample_burnin.py"],
        cwd=work, capture_output=True, text=True, timeout=300, check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr  # exactly: tests failed
    assert "1 failed, 1 passed" in proc.stdout, proc.stdout
    assert list(results.glob("*-result.json"))
    assert list(results.glob("*-attachment.txt"))
    return results


@needs_allure
def test_single_self_contained_file_with_history(allure_results: Path, tmp_path: Path) -> None:
    history = tmp_path / "history" / "allure-history.jsonl"
    out1, out2 = tmp_path / "run1", tmp_path / "run2"

    first = build_html_report(allure_results, out1, history, "vet burn-in #1")

    assert first == out1 / "report.html"
    assert [p.name for p in out1.iterdir()] == ["report.html"]  # one file, nothing beside it
    html = first.read_text(encoding="utf-8")
    assert html.lstrip().lower().startswith("<!doctype html>")
    # Self-contained: no script, stylesheet, font or frame fetched from elsewhere.
    assert not re.search(r"<(script|link|img|iframe)\b[^>]*\b(src|href)=[\"']?(https?:)?//",
                         html, re.IGNORECASE)
    assert "googletagmanager" not in html
    assert not re.search(r"<script\b[^>]*\bsrc=[\"'](?!data:)", html)  # only inlined scripts
    assert "vet burn-in #1" in html

    data = report_data(html)
    results = [json.loads(v) for k, v in data.items() if k.startswith("data/test-results/")]
    by_name = {r["name"]: r for r in results}
    assert set(by_name) == {"test_disk_smart_ok", "test_memory_ecc_errors"}
    assert by_name["test_disk_smart_ok"]["status"] == "passed"
    assert by_name["test_memory_ecc_errors"]["status"] == "failed"
    labels = {(lab["name"], lab["value"]) for lab in by_name["test_disk_smart_ok"]["labels"]}
    assert {("parentSuite", "burn-in"), ("suite", "storage"), ("host", "node-a01")} <= labels
    attachments = [v for k, v in data.items() if k.startswith("data/attachments/")]
    assert b"SMART overall-health: PASSED" in attachments
    assert not any(k.startswith("data/history/") for k in data)  # nothing before run 1
    tree = data["widgets/tree.json"].decode()  # grouped parent suite > suite > test
    assert '"burn-in"' in tree and '"storage"' in tree and '"memory"' in tree

    lines = history.read_text().splitlines()
    assert [json.loads(line)["name"] for line in lines] == ["vet burn-in #1"]

    second = build_html_report(allure_results, out2, history, "vet burn-in #2")

    runs = [json.loads(line) for line in history.read_text().splitlines()]
    assert [r["name"] for r in runs] == ["vet burn-in #1", "vet burn-in #2"]
    embedded = [json.loads(v) for k, v in report_data(second.read_text()).items()
                if k.startswith("data/history/")]
    assert [h["name"] for h in embedded] == ["vet burn-in #1"]
    assert first.read_text() == html  # the first report is left as it was


@needs_allure
def test_history_limit_bounds_the_file(allure_results: Path, tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    for n in range(3):
        build_html_report(allure_results, tmp_path / "out", history, f"run {n}", history_limit=2)
    assert [json.loads(x)["name"] for x in history.read_text().splitlines()] == ["run 1", "run 2"]


def test_missing_results_dir_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no allure results"):
        build_html_report(tmp_path / "nope", tmp_path / "out", tmp_path / "h.jsonl", "x")


@needs_allure
def test_allure_failure_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "results"
    results.mkdir()
    broken = tmp_path / "cli.js"
    broken.write_text("console.error('boom: simulated allure crash'); process.exit(3);\n")
    monkeypatch.setenv("VET_ALLURE_CLI", str(broken))
    with pytest.raises(ReportError, match=r"(?s)exit 3.*boom: simulated allure crash"):
        build_html_report(results, tmp_path / "out", tmp_path / "h.jsonl", "x")
    assert not (tmp_path / "out" / "report.html").exists()


def test_missing_cli_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VET_ALLURE_CLI", str(tmp_path / "absent" / "cli.js"))
    with pytest.raises(ReportError, match=r"make setup.*npm ci"):
        find_allure()


def test_remote_references_are_removed_or_refused() -> None:
    page = (
        '<html><head><script>window.allureReportOptions = {"reportName": "gtag(1)"}</script>'
        '</head><body><script src="data:text/javascript;base64,AAAA"></script>\n'
        '<script async src="https://www.googletagmanager.com/gtag/js?id=G-X"></script>\n'
        "<script>\n  window.dataLayer = window.dataLayer || [];\n"
        "  function gtag(){dataLayer.push(arguments);}\n</script>\n</body></html>"
    )
    cleaned = make_self_contained(page)
    assert "googletagmanager" not in cleaned and "dataLayer" not in cleaned
    assert 'window.allureReportOptions = {"reportName": "gtag(1)"}' in cleaned
    assert 'src="data:text/javascript;base64,AAAA"' in cleaned
    with pytest.raises(ReportError, match="external resource"):
        make_self_contained('<link rel="stylesheet" href="https://cdn.example/x.css">')
