"""`vet report` on a real vet run, opened in headless Chromium (Debian's `chromium`).

Three hosts vetted for real through the stages inventory and spec: node-good (this
machine, spec right), node-bad (this machine, spec says 64 threads) and node-gone (SSH to
a closed port on 127.0.0.1). `vet report` builds the single-file HTML; Chromium loads it
from disk with networking pointed at nothing, runs its JavaScript, and the DOM it dumps
must show every host and, under each failed one, the stage that failed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harness.report_html import ReportError, find_allure
from tests.fixtures.lab import free_port

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")


def _allure_missing() -> str | None:
    try:
        find_allure()
    except ReportError as exc:
        return str(exc)
    return None


pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                "(make setup installs it)"),
    pytest.mark.skipif(_allure_missing() is not None, reason=f"{_allure_missing()}"),
]


@dataclass
class Run:
    reports: Path
    run_id: str
    html: Path


@pytest.fixture(scope="module")
def vetted(tmp_path_factory: pytest.TempPathFactory) -> Run:
    work = tmp_path_factory.mktemp("report-run")
    key = work / "id_ed25519"
    key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption()))
    key.chmod(0o600)
    inv = work / "inv"
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(json.dumps({"all": {"hosts": {
        "node-good": {"ansible_connection": "local"},
        "node-bad": {"ansible_connection": "local"},
        "node-gone": {"ansible_host": "127.0.0.1", "ansible_port": free_port(),
                      "ansible_user": "root", "ansible_ssh_private_key_file": str(key),
                      "vet_macs": ["52:54:00:ab:01:02"]},
    }}}))
    threads = os.cpu_count()
    (inv / "host_vars" / "node-good.yml").write_text(
        json.dumps({"vet_spec": {"cpu": {"threads": threads}}}))
    (inv / "host_vars" / "node-bad.yml").write_text(
        json.dumps({"vet_spec": {"cpu": {"threads": 64 if threads != 64 else 128}}}))
    reports = work / "reports"
    run_id = "report-" + work.name[-8:]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", str(ROOT / "suites"), "-m",
         "stage and (inventory or spec)", "--inventory", str(inv), "--reports-dir",
         str(reports), "--run-id", run_id, "-p", "no:cacheprovider", "-p", "no:xdist", "-q"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    # node-gone errs (at set-up or in the test, wherever its SSH connection is first made)
    assert re.search(r"\b1 failed, 3 passed\b", done.stdout) or \
        re.search(r"\b2 failed, 3 passed\b", done.stdout), done.stdout[-3000:]
    report = subprocess.run(
        [sys.executable, "-m", "harness.cli", "--reports-dir", str(reports), "report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert report.returncode == 0, report.stdout + report.stderr
    html = reports / "html" / "report.html"
    assert f"HTML report:  {html.resolve()}" in report.stdout
    return Run(reports, run_id, html)


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: str = ""

    def all(self) -> list[Node]:
        found = [self]
        for child in self.children:
            found += child.all()
        return found

    def testid(self, value: str) -> list[Node]:
        return [n for n in self.all() if n.attrs.get("data-testid") == value]

    def words(self) -> str:
        return " ".join([self.text, *(c.words() for c in self.children)]).strip()


class _Dom(HTMLParser):
    """The dumped DOM as a tree (the standard library's tolerant parser, no lxml)."""

    VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link",
                      "meta", "source", "track", "wbr"})

    def __init__(self) -> None:
        super().__init__()
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].text += data


def chromium_dom(page: Path, profile: Path) -> Node:
    """The page's DOM after its scripts ran, from a headless Chromium with no network."""
    assert CHROMIUM is not None
    argv = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-pings",
            # Nothing may leave this machine: names resolve to nothing, and any request
            # that still tried would go to a closed port on loopback.
            "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9",
            "--virtual-time-budget=15000", "--dump-dom", page.resolve().as_uri()]
    if os.geteuid() == 0:
        argv.insert(1, "--no-sandbox")  # Chromium refuses root with its sandbox
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Dom()
    parser.feed(done.stdout)
    return parser.root


HOSTS = ("node-good", "node-bad", "node-gone")


def _bad(node: Node) -> bool:
    return any(re.search(r"\b\w*(failed|broken)", n.attrs.get("class", ""))
               for n in node.all())


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def test_chromium_shows_every_host_and_its_failed_stage(vetted: Run, tmp_path: Path) -> None:
    profile = tmp_path / "chromium-profile"
    dom = chromium_dom(vetted.html, profile)
    assert not _processes_mentioning(str(profile)), "Chromium left processes behind"

    # Each host is a tree section whose content holds its stages' sections; a failed
    # (assertion) or broken (error) result marks the status bars above it.
    shown: dict[str, bool] = {}
    stages: dict[str, dict[str, bool]] = {}
    for container in dom.all():
        kids = [c for c in container.children if c.attrs.get("data-testid")]
        for i, head in enumerate(kids):
            body = kids[i + 1] if i + 1 < len(kids) else None
            if head.attrs["data-testid"] != "tree-section":
                continue
            title = head.testid("tree-section-title")[0].words()
            if title not in HOSTS:
                continue
            shown[title] = _bad(head)
            if body is None or body.attrs["data-testid"] != "tree-content":
                continue  # a collapsed host: its stages are not rendered
            for stage in body.testid("tree-section"):
                stages.setdefault(title, {})[
                    stage.testid("tree-section-title")[0].words()] = _bad(stage)
    assert shown == {"node-good": False, "node-bad": True, "node-gone": True}, shown
    assert stages["node-bad"] == {"inventory": False, "spec": True}, stages
    assert stages["node-gone"] == {"inventory": True, "spec": False}, stages  # spec: skipped
    bad_leaves = {leaf.words() for leaf in dom.testid("tree-leaf")
                  if leaf.testid("tree-leaf-status-failed")
                  or leaf.testid("tree-leaf-status-broken")}
    assert any("test_hardware_matches_expected_spec[node-bad]" in w for w in bad_leaves)
    assert any("test_collect_hardware_inventory[node-gone]" in w for w in bad_leaves)

    # The environment widget: this run's id and profile.
    keys = [n.words() for n in dom.testid("metadata-item-key")]
    values = [n.words() for n in dom.testid("metadata-item-value")]
    assert dict(zip(keys, values, strict=True)).get("run.id") == vetted.run_id


def report_data(html: str) -> dict[str, bytes]:
    """Single-file mode stores each data file as d("path","<base64>")."""
    return {path: base64.b64decode(blob)
            for path, blob in re.findall(r'd\("([^"]+)","([A-Za-z0-9+/=]*)"\)', html)}


def test_categories_environment_and_json_summary(vetted: Run) -> None:
    data = report_data(vetted.html.read_text(encoding="utf-8"))
    tree = json.loads(data["widgets/categories.json"])
    by_category: dict[str, set[str]] = {}
    for root in tree["roots"]:

        def hosts_under(node_id: str) -> set[str]:
            node = tree["nodes"][node_id]
            found = {node["value"]} if node.get("key") == "parentSuite" else set()
            for child in node.get("childrenIds", []):
                found |= hosts_under(child)
            return found

        by_category[tree["nodes"][root]["name"]] = hosts_under(root)
    assert by_category == {"Spec mismatches": {"node-bad"},
                           "Infrastructure (PXE, power, console)": {"node-gone"}}

    # Each command is a step holding its raw output; records and the spec diff attached.
    results = {r["name"]: r for r in (json.loads(v) for k, v in data.items()
                                      if k.startswith("data/test-results/"))}
    inventory = results["test_collect_hardware_inventory[node-good]"]
    steps = {s["name"]: s for s in inventory["steps"] if s["type"] == "step"}
    assert "node-good$ lshw -json -quiet" in steps, sorted(steps)
    [raw] = steps["node-good$ lshw -json -quiet"]["steps"]
    assert raw["link"]["contentType"] == "text/plain" and raw["link"]["contentLength"] > 0

    def attached(result: dict[str, Any]) -> dict[str, str]:
        return {s["link"]["name"]: s["link"]["contentType"] for s in result["steps"]
                if s["type"] == "attachment"}

    assert attached(inventory)["hardware inventory"] == "application/json"
    assert attached(results["test_hardware_matches_expected_spec[node-bad]"])[
        "spec diff"] == "text/html"

    environment = {e["name"]: e["values"] for e in
                   json.loads(data["widgets/allure_environment.json"])}
    assert environment["run.id"] == [vetted.run_id]
    assert environment["run.hosts"] == ["node-bad, node-gone, node-good"]
    assert "package.vet-harness" in environment

    summary = json.loads((vetted.reports / "runs" / vetted.run_id / "summary.json").read_text())
    schema = json.loads((ROOT / "docs" / "vet-run-summary-2.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(summary)
    failed = {h["name"]: h["failed_stage"] for h in summary["hosts"]}
    assert failed == {"node-bad": "spec", "node-gone": "inventory", "node-good": None}
