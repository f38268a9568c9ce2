"""Channel fixtures for the contract tests (transports that need no server)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from harness.console.local import LocalChannel


@pytest.fixture
def local_channel() -> Iterator[LocalChannel]:
    chan = LocalChannel("contract-host")
    yield chan
    chan.close()
