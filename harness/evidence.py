"""Evidence: raw outputs and parsed records, kept on disk and attached to Allure.

Files on disk are the record that survives anything; the Allure attachment is how
a person sees them next to the verdict.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import allure

from harness.events import redact as redact_tokens
from harness.models import to_jsonable

_TYPES = {
    "text": (allure.attachment_type.TEXT, "txt"),
    "json": (allure.attachment_type.JSON, "json"),
    "html": (allure.attachment_type.HTML, "html"),
}


class Evidence:
    """Writes numbered evidence files under one directory and attaches each.

    Text passes through `redact` first (default: run tokens out, as in the event log):
    raw outputs such as `dmesg` carry the host's kernel command line.
    """

    def __init__(self, directory: Path,
                 redact: Callable[[str], str] = redact_tokens) -> None:
        self.directory = directory
        self._count = 0
        self._redact = redact

    def attach(self, name: str, body: str, kind: str = "text") -> Path:
        attachment_type, extension = _TYPES[kind]
        name, body = self._redact(name), self._redact(body)
        self._count += 1
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "evidence"
        path = self.directory / f"{self._count:03d}-{safe}.{extension}"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        allure.attach(body, name=name, attachment_type=attachment_type)
        return path

    def reserve(self) -> int:
        """The number of the next file, kept for one attached later (a plot drawn in the
        background keeps its place next to its record)."""
        self._count += 1
        return self._count

    def attach_png(self, name: str, image: bytes, number: int | None = None) -> Path:
        """A plot: the PNG file on disk, and the image in the report."""
        if number is None:
            number = self.reserve()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "plot"
        path = self.directory / f"{number:03d}-{safe}.png"
        self.directory.mkdir(parents=True, exist_ok=True)
        path.write_bytes(image)
        allure.attach(image, name=name, attachment_type=allure.attachment_type.PNG)
        return path

    def attach_json(self, name: str, record: Any) -> Path:
        return self.attach(name, json.dumps(to_jsonable(record), indent=2, sort_keys=True), "json")
