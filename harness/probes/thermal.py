"""Temperature samples from sysfs -> ThermalSamples (the cpu stage's temperatures over time).

The stage runs THERMAL_COMMAND every few seconds on the host while stress-ng runs and
parses the lines collected. One line per sensor per sample: `EPOCH|SENSOR|MILLIDEGREES`,
SENSOR being `thermal:<zone type>` (/sys/class/thermal) or `hwmon:<chip>:<label>`
(/sys/class/hwmon: coretemp, k10temp, nvme...). sysfs rather than `sensors -j`: it needs no
package (lm-sensors is not in every image) and reads the same kernel drivers.

Empty output is a valid result: the host exposes no temperature sensor (a VM). A line
that does not have the three fields is not this command's output: ParseError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.probes._common import fail

TOOL = "thermal"

#: One sample of every readable sensor; POSIX sh, no bash-isms, no external tools but cat
#: and date. Unreadable or absent files print nothing.
THERMAL_COMMAND = (
    "t=$(date +%s); "
    "for z in /sys/class/thermal/thermal_zone*; do "
    "[ -r \"$z/temp\" ] && v=$(cat \"$z/temp\" 2>/dev/null) && "
    "printf '%s|thermal:%s|%s\\n' \"$t\" \"$(cat \"$z/type\" 2>/dev/null)\" \"$v\"; "
    "done; "
    "for f in /sys/class/hwmon/hwmon*/temp*_input; do "
    "[ -r \"$f\" ] && v=$(cat \"$f\" 2>/dev/null) || continue; "
    "l=$(cat \"${f%_input}_label\" 2>/dev/null || basename \"${f%_input}\"); "
    "printf '%s|hwmon:%s:%s|%s\\n' \"$t\" \"$(cat \"${f%/*}/name\" 2>/dev/null)\" \"$l\" \"$v\"; "
    "done; true"
)

_LINE = re.compile(r"(?P<t>\d{1,12})\|(?P<sensor>[^|]{1,200})\|(?P<value>-?\d{1,9})")


@dataclass(frozen=True)
class SensorSeries:
    """One sensor's readings over time, in degrees Celsius."""

    sensor: str
    readings: tuple[tuple[int, float], ...]  # (epoch seconds, degrees C)

    @property
    def max_c(self) -> float:
        return max(value for _, value in self.readings)

    @property
    def first_c(self) -> float:
        return self.readings[0][1]

    @property
    def last_c(self) -> float:
        return self.readings[-1][1]


@dataclass(frozen=True)
class ThermalSamples:
    series: tuple[SensorSeries, ...]
    samples: int  # distinct sampling times

    @property
    def available(self) -> bool:
        return bool(self.series)

    @property
    def hottest(self) -> SensorSeries | None:
        return max(self.series, key=lambda s: s.max_c, default=None)


def parse_thermal(text: str) -> ThermalSamples:
    """Parse the lines THERMAL_COMMAND printed, over any number of samples."""
    readings: dict[str, list[tuple[int, float]]] = {}
    times: set[int] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.fullmatch(line.strip())
        if match is None:
            fail(TOOL, f"line {number}: expected EPOCH|SENSOR|MILLIDEGREES, got {line[:80]!r}")
        at = int(match["t"])
        value = int(match["value"]) / 1000.0
        if not -100.0 <= value <= 250.0:
            continue  # disconnected sensors report nonsense such as -273 C or 255 C
        times.add(at)
        readings.setdefault(match["sensor"].strip(), []).append((at, value))
    series = tuple(SensorSeries(name, tuple(sorted(values)))
                   for name, values in sorted(readings.items()))
    return ThermalSamples(series, len(times))
