"""The run's plot server (harness.plot_server) as a real process: it draws what a client
sends, byte for byte what drawing in-process gives; a bad request is an error for that
plot only; it ends with the run, and with a controller killed by SIGKILL; a client that
cannot reach it draws the plot itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.plot_server import PlotService, start, stop
from harness.plots import render
from tests.helpers import gone

REPO = Path(__file__).resolve().parents[2]
PANELS = [("°C", [("cpu", [(0.0, 40.0), (5.0, 55.0), (10.0, 52.0)])])]


def test_the_server_draws_what_the_process_would_and_ends_with_the_run() -> None:
    service, proc = start()
    try:
        assert service.address.startswith("\0")  # abstract: no socket file left behind
        png = service.render("node01 cpu: temperatures", PANELS, "seconds")
        assert png == render("node01 cpu: temperatures", PANELS, "seconds")
        again = PlotService.from_json(json.loads(json.dumps(service.to_json())))
        assert again.render("t", PANELS, "s") == render("t", PANELS, "s")  # a 2nd client
        with pytest.raises(RuntimeError, match="could not draw it: IndexError"):
            service.render("t", [("y", [])], "s")  # a panel without a series
        assert service.render("t", PANELS, "s") == png_of("t")  # still serving after it
    finally:
        stop(proc)
    assert proc.returncode == 0
    assert gone(proc.pid, 1)


def png_of(title: str) -> bytes:
    return render(title, PANELS, "s")


def test_a_wrong_key_is_refused_and_the_client_draws_itself(caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    service, proc = start()
    try:
        stranger = PlotService(service.address, b"not the key")
        assert stranger.render("t", PANELS, "s") == png_of("t")  # drawn here instead
        assert "drawing in this process" in caplog.text
        assert service.render("t", PANELS, "s") == png_of("t")  # the run's own still works
    finally:
        stop(proc)


def test_a_dead_server_leaves_each_plot_to_its_client(caplog: pytest.LogCaptureFixture) -> None:
    service, proc = start()
    try:
        assert service.render("t", PANELS, "s") == png_of("t")  # connected
        proc.kill()
        proc.wait(10)
        assert service.render("t", PANELS, "s") == png_of("t")  # drawn here
        assert "drawing in this process" in caplog.text
    finally:
        stop(proc)


def test_the_server_ends_when_its_controller_is_killed(tmp_path: Path) -> None:
    code = ("import sys\n"
            "from harness.plot_server import start\n"
            "service, proc = start()\n"
            "print(proc.pid, flush=True)\n"
            "sys.stdin.read()\n")
    controller = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, text=True,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert controller.stdout is not None
        server = int(controller.stdout.readline())
        assert not gone(server, 0.2)
        os.kill(controller.pid, signal.SIGKILL)
        controller.wait(10)
        assert gone(server, 10), "the plot server outlived its controller"
    finally:
        controller.kill()
        controller.wait(10)
