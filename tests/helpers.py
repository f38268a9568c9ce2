"""Small helpers shared by vet's own tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from hypothesis import strategies as st

from harness.processes import exited


def gone(pid: int, within: float = 5.0) -> bool:
    """True once the process has exited, waiting at most `within` seconds (a pidfd: on
    an event, not by polling)."""
    return exited(pid, within)


def load_suite(stage: str) -> ModuleType:
    """suites/test_<stage>.py as a module, so a test can call a stage's test functions
    with a HostUnderTest of its own (suites/ is not a package)."""
    path = Path(__file__).resolve().parents[1] / "suites" / f"test_{stage}.py"
    spec = importlib.util.spec_from_file_location(f"vet_suite_{stage}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mutate(data: st.DataObject, value: object, leaves: st.SearchStrategy[object]) -> object:
    """Replace one randomly chosen subtree of a real document with a value from `leaves`."""
    descend = data.draw(st.integers(0, 4)) > 0
    if descend and isinstance(value, dict) and value:
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: mutate(data, value[key], leaves)}
    if descend and isinstance(value, list) and value:
        index = data.draw(st.integers(0, len(value) - 1))
        return [*value[:index], mutate(data, value[index], leaves), *value[index + 1 :]]
    return data.draw(leaves)
