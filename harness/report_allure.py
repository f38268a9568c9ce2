"""What an Allure report needs besides test results: the run's environment and the
categories that sort failures by who has to act.

The environment goes into ``allure-results/environment.properties`` when a run starts
(Allure 2 and 3 both read that file; its widget shows run, profile, inventory and the
versions that produced the verdicts). Categories are defined once here and rendered two
ways: as ``categories.json`` in the results (Allure 2's format, for whoever opens the
results with Allure 2) and as the ``categories`` rules of Allure 3's config, which
``harness.report_html`` passes to ``allure generate``.

The exception classes behind each category are imported, not spelled out, so renaming
one cannot silently move its failures into another category.
"""

from __future__ import annotations

import importlib.metadata
import json
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.console.channel import ChannelError
from harness.lab.daemon import LabError
from harness.netboot import BootFailed, HostRefused
from harness.power import PowerError
from harness.provision import ProvisionError
from harness.token import TokenError

__all__ = [
    "CATEGORIES",
    "Category",
    "allure2_categories",
    "allure3_categories",
    "environment",
    "properties_text",
    "write_run_metadata",
]

#: Failures of what brings a host to the stages: PXE, boot, power, console/SSH, lab.
INFRASTRUCTURE_ERRORS: tuple[type[Exception], ...] = (
    BootFailed, HostRefused, ProvisionError, PowerError, ChannelError, LabError, TokenError,
)
#: Python packages whose versions say which vet produced a report.
PACKAGES = ("vet-harness", "pytest", "pytest-xdist", "allure-pytest", "ansible-core",
            "paramiko", "pyghmi")
#: Tools whose versions decide verdicts (on the live image, or on a local host).
TOOLS = ("stress-ng", "fio", "smartmontools", "nvme-cli", "lshw", "dmidecode", "iperf3",
         "ethtool", "pciutils", "ipmitool", "linux-image-amd64")


def _class_names(classes: Iterable[type[Exception]]) -> list[str]:
    """Each class and every subclass defined so far (e.g. PowerConfigError)."""
    names: set[str] = set()
    todo = list(classes)
    while todo:
        cls = todo.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
    return sorted(names)


def _message_regex(classes: Iterable[type[Exception]]) -> str:
    """Allure's message is `module.Class: text` (pytest.fail adds `Failed: Class: text`)."""
    names = "|".join(re.escape(n) for n in _class_names(classes))
    return rf"^(Failed: )?([\w.]+\.)?({names})\b"


@dataclass(frozen=True)
class Category:
    """One Allure category: the first whose every condition holds takes a failure."""

    name: str
    description: str
    statuses: tuple[str, ...]
    message: str | None = None  # regular expression on the failure message
    labels: Mapping[str, str] = field(default_factory=dict)  # label -> regular expression


CATEGORIES: tuple[Category, ...] = (
    Category("Infrastructure (PXE, power, console)",
             "vet could not boot, power or reach the host: check the PXE server, BMC, "
             "cabling and console before blaming the hardware",
             ("failed", "broken"), message=_message_regex(INFRASTRUCTURE_ERRORS)),
    Category("Spec mismatches",
             "the host is not what the inventory says (vet_spec): wrong part, missing "
             "DIMM or disk, or a spec to correct",
             ("failed",), labels={"suite": "^spec$"}),
    Category("Hardware faults",
             "a stage's check failed on the hardware (errors, verification, SMART, "
             "throttling, console death): a case for the vendor",
             ("failed",)),
    Category("Harness errors",
             "vet itself or its set-up went wrong (missing tool, bad parameter, a bug): "
             "fix vet or its configuration and run again",
             ("broken",)),
)


def allure2_categories(categories: Iterable[Category] = CATEGORIES) -> list[dict[str, Any]]:
    """categories.json as Allure 2 reads it (label conditions have no Allure 2 form, so a
    category with labels is left to the Allure 3 rules)."""
    rendered = []
    for c in categories:
        if c.labels:
            continue
        entry: dict[str, Any] = {"name": c.name, "description": c.description,
                                 "matchedStatuses": list(c.statuses)}
        if c.message is not None:
            entry["messageRegex"] = f"(?s){c.message}.*"
        rendered.append(entry)
    return rendered


def allure3_categories(categories: Iterable[Category] = CATEGORIES) -> list[dict[str, Any]]:
    """The `categories` rules of an Allure 3 config (allurerc)."""
    rules = []
    for c in categories:
        matcher: dict[str, Any] = {"statuses": list(c.statuses)}
        if c.message is not None:
            matcher["message"] = c.message
        if c.labels:
            matcher["labels"] = dict(c.labels)
        rules.append({"id": re.sub(r"\W+", "-", c.name.lower()).strip("-"), "name": c.name,
                      "matchers": [matcher], "groupBy": [{"label": "parentSuite"}],
                      "groupByMessage": True, "expand": True})
    return rules


def _package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[f"package.{name}"] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _image_tool_versions() -> dict[str, str]:
    """Tool versions on the live image, read from the cached build's manifest (no build)."""
    from harness.image import MANIFEST, default_cache_dir, recipe_hash

    digest = recipe_hash()
    manifest_file = default_cache_dir() / digest / MANIFEST
    found = {"live_image.recipe": digest}
    try:
        manifest = json.loads(manifest_file.read_text())
    except (OSError, ValueError):
        found["live_image.status"] = "not built yet"
        return found
    if manifest.get("kernel"):
        found["live_image.kernel"] = str(manifest["kernel"])
    packages = manifest.get("packages")
    if isinstance(packages, dict):
        found.update({f"live_image.{t}": str(packages[t]) for t in TOOLS if t in packages})
    return found


def _local_tool_versions(timeout_s: float = 10.0) -> dict[str, str]:
    """Debian package versions of the tools on the controller (for hosts vetted locally)."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return {}
    try:
        out = subprocess.run([dpkg, "-W", "-f", "${Package}\t${Version}\t${db:Status-Abbrev}\n",
                              *TOOLS], capture_output=True, text=True, timeout=timeout_s,
                             check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    versions = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[2].startswith("ii"):
            versions[f"controller.{parts[0]}"] = parts[1]
    return versions


def environment(run_id: str, profile: str, inventory: str, hosts: Iterable[str], *,
                netbooted: bool, local: bool) -> dict[str, str]:
    """Who ran what where: the run, the controller, and every version known up front.

    `netbooted`: some host boots the live image (its tool versions come from the image);
    `local`: some host is the controller itself (the controller's tools are the ones used).
    No inventory values other than host names: credentials live there.
    """
    env = {
        "run.id": run_id,
        "run.profile": profile,
        "run.inventory": inventory,
        "run.hosts": ", ".join(sorted(hosts)),
        "controller.hostname": platform.node(),
        "controller.os": platform.platform(terse=True),
        "controller.python": sys.version.split()[0],
    }
    env.update(_package_versions())
    if netbooted:
        env.update(_image_tool_versions())
    if local:
        env.update(_local_tool_versions())
    return env


def _escape(text: str, key: bool) -> str:
    """Java .properties escaping: backslash, line breaks, and `=`/`:`/space in keys.

    Hand-written: the format needs these four rules, less than a dependency would cost.
    """
    text = (text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
            .replace("\t", "\\t"))
    if key:
        text = re.sub(r"([=: #!])", r"\\\1", text)
    elif text.startswith(" "):
        text = "\\" + text
    return "".join(c if ord(c) < 128 else f"\\u{ord(c):04x}" for c in text)


def properties_text(values: Mapping[str, str]) -> str:
    return "".join(f"{_escape(k, True)}={_escape(v, False)}\n" for k, v in values.items())


def write_run_metadata(results_dir: Path, env: Mapping[str, str]) -> None:
    """environment.properties and categories.json into a run's allure-results."""
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "environment.properties").write_text(properties_text(env), encoding="ascii")
    (results_dir / "categories.json").write_text(
        json.dumps(allure2_categories(), indent=2) + "\n", encoding="utf-8")
