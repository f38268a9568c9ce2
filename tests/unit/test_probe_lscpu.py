from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.probes import ParseError
from harness.probes.lscpu import parse_lscpu

LOCAL = Path(__file__).resolve().parents[1] / "data" / "local" / "lscpu.json"


def test_local_capture() -> None:
    info = parse_lscpu(LOCAL.read_text())
    assert info.model_name == "Intel(R) Xeon(R) Processor"
    assert (info.cpus, info.sockets, info.cores_per_socket, info.threads_per_core) == (2, 1, 2, 1)
    assert info.cores == 2


def test_nested_children_layout_of_newer_util_linux() -> None:
    doc = {"lscpu": [
        {"field": "CPU(s):", "data": "128"},
        {"field": "Vendor ID:", "data": "AuthenticAMD", "children": [
            {"field": "Model name:", "data": "AMD EPYC 9454P 48-Core Processor", "children": [
                {"field": "Thread(s) per core:", "data": "2"},
                {"field": "Core(s) per socket:", "data": "48"},
                {"field": "Socket(s):", "data": "1"}]}]}]}
    info = parse_lscpu(json.dumps(doc))
    assert info.model_name == "AMD EPYC 9454P 48-Core Processor"
    assert (info.cpus, info.cores, info.threads_per_core) == (128, 48, 2)


def test_this_machine_if_lscpu_runs() -> None:
    import shutil
    import subprocess

    if shutil.which("lscpu") is None:
        pytest.skip("lscpu not installed (util-linux)")
    out = subprocess.run(["lscpu", "-J"], capture_output=True, text=True, check=True).stdout
    assert parse_lscpu(out).cpus == os.cpu_count()


@pytest.mark.parametrize("text, detail", [
    ("", "not JSON"),
    ('{"lscpu": [{"field": "CPU(s):", "data": "2"}', "not JSON"),
    ("[]", "no 'lscpu' key"),
    ('{"lscpu": {"x": 1}}', "expected a list"),
    ('{"lscpu": [{"data": "2"}]}', "without a 'field'"),
])
def test_malformed_input_names_the_tool(text: str, detail: str) -> None:
    with pytest.raises(ParseError, match=f"lscpu.*{detail}"):
        parse_lscpu(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)


@given(st.text(max_size=200))
def test_fuzz_text_gives_a_record_or_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_lscpu(text)


@given(json_values)
def test_fuzz_json_gives_a_record_or_parse_error(value: object) -> None:
    with contextlib.suppress(ParseError):
        parse_lscpu(json.dumps({"lscpu": value}))
