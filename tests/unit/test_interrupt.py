"""harness.interrupt: SIGTERM becomes the KeyboardInterrupt of Ctrl-C, once; signals are
sent to this process itself (the handlers run in its main thread)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from harness.interrupt import Interrupts


@pytest.fixture
def interrupts() -> Iterator[Interrupts]:
    forwarded: list[int] = []
    handler = Interrupts(lambda: forwarded)
    assert handler.install()
    yield handler
    handler.uninstall()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_the_first_stop_signal_interrupts(interrupts: Interrupts, signum: signal.Signals
                                          ) -> None:
    with pytest.raises(KeyboardInterrupt, match=f"{signum.name}: interrupted by operator"):
        os.kill(os.getpid(), signum)
    assert interrupts.name == signum.name


def test_a_second_signal_does_not_cut_the_cleanup(interrupts: Interrupts,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the cleanup goes on
    assert interrupts.name == "SIGTERM"
    assert "SIGINT while already stopping after SIGTERM" in capsys.readouterr().err


def test_uninstall_puts_the_previous_handlers_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    handler = Interrupts()
    handler.install()
    assert signal.getsignal(signal.SIGTERM) != before
    handler.uninstall()
    assert signal.getsignal(signal.SIGTERM) == before
