"""PNG plots of series over time: drawn from real parsed captures, none without a series."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.console.local import LocalChannel
from harness.host import HostUnderTest, RunContext
from harness.models import Connection, Host
from harness.plots import plot_record, render
from harness.probes.fio import parse_fio
from harness.probes.nvidia_smi import parse_nvidia_smi
from harness.probes.thermal import parse_thermal
from harness.store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
H100 = DATA / "corpus" / "nvidia-smi" / (
    "h100-80gb-hbm3_capture-bundle_q-text_query-gpu-csv_idle-and-load.txt")
THERMAL = "\n".join(
    f"{1_790_000_000 + 5 * i}|{sensor}|{base + 1000 * i}"
    for i in range(4) for sensor, base in (("thermal:x86_pkg_temp", 41000),
                                           ("hwmon:nvme:Composite", 35000)))


def image(png: bytes | None) -> Image.Image:
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(png))


def coloured_pixels(img: Image.Image) -> int:
    """Pixels that are neither grey nor white: the curves (axes and text are black)."""
    rgb = np.asarray(img.convert("RGB"), dtype=int)
    return int((rgb.max(axis=2) - rgb.min(axis=2) > 60).sum())


def test_temperatures_over_time_are_plotted() -> None:
    img = image(plot_record("vm cpu: temperatures", parse_thermal(THERMAL)))
    assert img.size == (800, 320)  # one panel
    assert coloured_pixels(img) > 500  # two curves drawn, not an empty frame


def test_gpu_samples_give_temperature_clock_and_power_panels() -> None:
    report = parse_nvidia_smi(H100.read_text())
    assert len(report.logs) == 2
    img = image(plot_record("node gpu: nvidia-smi during the load", report))
    assert img.size == (800, 840)  # three panels: temperature, SM clock, power
    assert coloured_pixels(img) > 500


@pytest.mark.parametrize("record", [
    parse_thermal(""),  # no sensor at all (a VM)
    parse_thermal(THERMAL.splitlines()[0]),  # one sample is not a series
    parse_fio((DATA / "local" / "fio.json").read_text()),  # no series in this record
    {"available": False},
])
def test_no_series_no_plot(record: object) -> None:
    assert plot_record("x", record) is None


def test_render_is_deterministic() -> None:
    panels = [("°C", [("a", [(0.0, 1.0), (5.0, 2.0)])])]
    assert render("t", panels) == render("t", panels)


def test_record_attaches_the_plot_next_to_the_json(tmp_path: Path) -> None:
    with Store(tmp_path / "vet.sqlite") as store:
        ctx = RunContext("r1", "quick", store, tmp_path / "runs" / "r1")
        host = HostUnderTest(Host("vm", Connection("local")), LocalChannel("vm"), ctx, {})
        try:
            host.enter_stage("cpu")
            host.record("temperatures", parse_thermal(THERMAL))
            host.record("no sensors", parse_thermal(""))
        finally:
            host.close()
        files = sorted(p.name for p in (tmp_path / "runs" / "r1" / "vm" / "cpu")
                       .iterdir())
        assert files == ["001-temperatures.json", "002-temperatures_over_time.png",
                         "003-no_sensors.json"]
        assert [r["name"] for r in store.records("r1", "vm")] == [
            "temperatures", "no sensors"]


def test_a_plot_is_drawn_while_the_stage_goes_on_and_failures_are_said(
        tmp_path: Path) -> None:
    """record() hands the drawing to a background thread; finish_plots() (the test's end)
    attaches it in its place; a plot that cannot be drawn is an event, not an error."""
    import json
    import threading

    may_draw = threading.Event()
    drawing = threading.Event()

    def slow_render(*args: object) -> bytes:
        drawing.set()
        assert may_draw.wait(30), "the test never let the plot finish"
        return render(*args)  # type: ignore[arg-type]

    with Store(tmp_path / "vet.sqlite") as store:
        ctx = RunContext("r1", "quick", store, tmp_path / "runs" / "r1")
        host = HostUnderTest(Host("vm", Connection("local")), LocalChannel("vm"), ctx, {})
        host.renderer = slow_render  # as the run's plot server would (harness.plot_server)
        try:
            host.enter_stage("cpu")
            host.record("temperatures", parse_thermal(THERMAL))  # returns while it draws
            assert drawing.wait(30)
            host.record("no sensors", parse_thermal(""))
            stage_dir = tmp_path / "runs" / "r1" / "vm" / "cpu"
            assert not list(stage_dir.glob("*.png"))
            may_draw.set()
            host.finish_plots()
            assert sorted(p.name for p in stage_dir.iterdir()) == [
                "001-temperatures.json", "002-temperatures_over_time.png",
                "003-no_sensors.json"]

            host.renderer = lambda *a: 1 / 0  # type: ignore[assignment]
            host.record("again", parse_thermal(THERMAL))
        finally:
            host.close()  # attaches (or reports) what is still pending
        events = [json.loads(line) for line in
                  (tmp_path / "runs" / "r1" / "vm" / "events.jsonl").read_text().splitlines()]
        failed = [e for e in events if e["kind"] == "plot-failed"]
        assert [(e["record"], e["error"]) for e in failed] == [
            ("again", "ZeroDivisionError: division by zero")]
        assert not list(stage_dir.glob("*again*.png"))
