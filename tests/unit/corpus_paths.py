"""Where the probe tests find their sample outputs.

Redistributable corpus files are bundled in tests/data/corpus/<tool>/. The others (no
licence stated, GPL) are only read from the shared corpus next to the checkout
(../shared/corpus/<tool>/); a test that needs one skips, saying so, where it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "tests" / "data" / "corpus"
SHARED = REPO.parent / "shared" / "corpus"
LOCAL = REPO / "tests" / "data" / "local"


def corpus_file(tool: str, name: str) -> Path:
    """The bundled copy if there is one, else the shared corpus copy, else skip the test."""
    for root in (BUNDLED, SHARED):
        path = root / tool / name
        if path.is_file():
            return path
    pytest.skip(
        f"corpus file {tool}/{name} is not bundled (licence does not allow it) and "
        f"{SHARED} is not available"
    )


def corpus_text(tool: str, name: str) -> str:
    return corpus_file(tool, name).read_text(encoding="utf-8")


def available_corpus_names(tool: str) -> set[str]:
    """Every corpus file name for `tool` present in either location (for completeness checks)."""
    names: set[str] = set()
    for root in (BUNDLED, SHARED):
        folder = root / tool
        if folder.is_dir():
            names.update(p.name for p in folder.iterdir() if p.is_file())
    return names


def local_text(name: str) -> str:
    """A capture from the development VM (tests/data/local/, see its README.md)."""
    return (LOCAL / name).read_text(encoding="utf-8")
