"""Spec validation: is the host what the inventory says it should be?"""

from __future__ import annotations

import pytest

from harness.collect import hardware_inventory
from harness.host import HostUnderTest
from harness.spec import compare, critical, diff_table_html, diff_table_text

pytestmark = [pytest.mark.stage, pytest.mark.spec]


def test_hardware_matches_expected_spec(host: HostUnderTest) -> None:
    rows = compare(host.expected, hardware_inventory(host))
    if not rows:
        pytest.skip(f"host {host.name} has no vet_spec in the inventory: nothing to compare "
                    "(`vet inventory draft` writes a first one; see docs/INVENTORY.md)")
    host.record_spec_diff(rows)
    host.evidence.attach("spec diff", diff_table_html(rows), "html")
    host.evidence.attach("spec diff (text)", diff_table_text(rows))
    problems = critical(rows)
    assert not problems, "; ".join(f"{r.item}: {r.message}" for r in problems)
