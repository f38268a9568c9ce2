"""PNG plots of the series a stage recorded while its load ran (temperatures, GPU clocks
and power, disk and network throughput over time), for the report: a curve shows a fan
that gave up, a clock that sagged or a disk that stalled long before the one number in a
measurement does.

matplotlib's object API (Figure + the Agg canvas) draws without pyplot, so nothing global
is touched, no display is needed and threads do not share a current figure. Which records
have series is decided here, by type; a record without a series over time (fewer than two
samples) gets no plot.
"""

from __future__ import annotations

import datetime as dt
import io
import math
from collections.abc import Sequence
from typing import Any

from harness.probes.fio import FioResult
from harness.probes.iperf3 import Iperf3Result
from harness.probes.nvidia_smi import NvidiaSmiReport
from harness.probes.thermal import ThermalSamples

__all__ = ["PLOTTING_STAGES", "SERIES_POINTS", "Panels", "Plot", "Series", "plot_of",
           "plot_record", "render", "series_step_s"]

#: The stages that record series over time (temperatures, nvidia-smi samples, fio and
#: iperf3 intervals), so draw a plot.
PLOTTING_STAGES = frozenset({"cpu", "gpu", "storage", "network"})

#: About how many samples a series over a load's duration gets: enough for a curve,
#: few enough that an hour of fio reports (7 KB each) stays a small capture.
SERIES_POINTS = 60

#: nvidia-smi -q's timestamp, e.g. "Tue Jul 14 08:12:38 2026".
_NVIDIA_TIME = "%a %b %d %H:%M:%S %Y"

Series = tuple[str, Sequence[tuple[float, float]]]  # label, (seconds, value) points


def series_step_s(duration_s: float, points: int = SERIES_POINTS) -> int:
    """Whole seconds between two samples so a load of `duration_s` yields about `points`
    (at least one second: fio and iperf3 report in whole seconds)."""
    return max(1, math.ceil(duration_s / points))


def render(title: str, panels: Panels,
           xlabel: str = "seconds since the first sample") -> bytes:
    """One PNG: a panel per (y label, series) pair, stacked, sharing the time axis."""
    # Imported here: matplotlib costs seconds to import, and most processes that import
    # the harness (every xdist worker, the CLI) never draw a plot.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 2.6 * len(panels) + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, (ylabel, series) in zip(axes, panels, strict=True):
        for label, points in series:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=label)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if len(series) > 1 or series[0][0]:
            ax.legend(fontsize="small", loc="best")
    axes[-1].set_xlabel(xlabel)
    figure.suptitle(title)
    # Fixed margins, in inches, instead of tight_layout(): that measures every label with
    # an extra draw, a third of the render (0.24 -> 0.15 s a plot, measured), and these
    # plots' labels are short and alike.
    height = figure.get_figheight()
    figure.subplots_adjust(left=0.09, right=0.98, top=1 - 0.45 / height,
                           bottom=0.55 / height, hspace=0.12 * len(panels))
    out = io.BytesIO()
    figure.savefig(out, format="png", metadata={"Software": None})
    return out.getvalue()


def _thermal(samples: ThermalSamples) -> list[tuple[str, Sequence[Series]]]:
    long = [s for s in samples.series if len(s.readings) >= 2]
    if not long:
        return []
    start = min(s.readings[0][0] for s in long)
    return [("temperature (°C)",
             [(s.sensor, [(float(t - start), c) for t, c in s.readings]) for s in long])]


def _nvidia_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return dt.datetime.strptime(text.strip(), _NVIDIA_TIME).timestamp()
    except ValueError:
        return None


def _nvidia(report: NvidiaSmiReport) -> list[tuple[str, Sequence[Series]]]:
    """Per GPU: temperature, SM clock (the throughput it ran at) and power, per sample.

    Samples without a timestamp are placed by their order (one per sample interval is not
    known here, so the axis then counts samples, not seconds)."""
    if len(report.logs) < 2:
        return []
    times = [_nvidia_time(log.timestamp) for log in report.logs]
    if all(t is not None for t in times):
        start = min(t for t in times if t is not None)
        xs = [float(t - start) for t in times if t is not None]
    else:
        xs = [float(i) for i in range(len(report.logs))]
    panels: list[tuple[str, Sequence[Series]]] = []
    for ylabel, attribute in (("temperature (°C)", "temperature_c"),
                              ("SM clock (MHz)", "sm_clock_mhz"),
                              ("power (W)", "power_draw_w")):
        curves: dict[str, list[tuple[float, float]]] = {}
        for x, log in zip(xs, report.logs, strict=True):
            for gpu in log.gpus:
                value = getattr(gpu, attribute)
                if value is not None:
                    name = f"GPU {gpu.index if gpu.index is not None else gpu.pci_bus_id}"
                    curves.setdefault(name, []).append((x, float(value)))
        series = [(name, pts) for name, pts in sorted(curves.items()) if len(pts) >= 2]
        if series:
            panels.append((ylabel, series))
    return panels


def _fio(result: FioResult) -> list[tuple[str, Sequence[Series]]]:
    """Read and write MiB/s per status interval, each direction that moved any data."""
    if len(result.intervals) < 2:
        return []
    series: list[Series] = []
    for label, attribute in (("read", "read_bytes_per_s"), ("write", "write_bytes_per_s")):
        points = [(i.end_s, getattr(i, attribute) / 2**20) for i in result.intervals]
        if any(value > 0 for _, value in points):
            series.append((label, points))
    return [("throughput (MiB/s)", series)] if series else []


def _iperf3(result: Iperf3Result) -> list[tuple[str, Sequence[Series]]]:
    """Gbit/s per report interval (warm-up left out), and TCP retransmits where counted."""
    kept = [i for i in result.intervals if not i.omitted]
    if len(kept) < 2:
        return []
    panels: list[tuple[str, Sequence[Series]]] = [
        ("throughput (Gbit/s)", [("", [(i.end_s, i.bits_per_second / 1e9) for i in kept])])]
    if all(i.retransmits is not None for i in kept):
        panels.append(("TCP retransmits", [("", [(i.end_s, float(i.retransmits or 0))
                                                  for i in kept])]))
    return panels


Panels = Sequence[tuple[str, Sequence[Series]]]  # (y label, its series) per panel
Plot = tuple[Panels, str]  # panels, x label


def plot_of(record: Any) -> Plot | None:
    """What a plot of the record would show (cheap: no drawing), or None when it has no
    series over time."""
    xlabel = "seconds since the first sample"
    if isinstance(record, ThermalSamples):
        panels = _thermal(record)
    elif isinstance(record, NvidiaSmiReport):
        panels = _nvidia(record)
    elif isinstance(record, FioResult):
        panels, xlabel = _fio(record), "seconds since fio started (end of each report)"
    elif isinstance(record, Iperf3Result):
        panels, xlabel = _iperf3(record), "seconds since iperf3 started (end of each interval)"
    else:
        return None
    return (panels, xlabel) if panels else None


def plot_record(title: str, record: Any) -> bytes | None:
    """A PNG of the record's series over time, or None when it has none to show."""
    plot = plot_of(record)
    return render(title, *plot) if plot is not None else None
