"""What every driver shares: reading its parameters, retrying a BMC, naming failures.

A driver describes one try of an action as a function of the seconds left; this
module repeats it with exponential backoff (tenacity) while the failure is
transient and the deadline (`timeout_s`) allows, then raises one PowerError that
names host, driver, action, target and the last thing that went wrong.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from harness.models import Host
from harness.power import (
    DEFAULT_SHUTDOWN_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    GracefulOffTimeout,
    PowerConfigError,
    PowerError,
)

T = TypeVar("T")
E = TypeVar("E", bound=PowerError)

#: Backoff between tries: 0.25 s doubling up to 4 s.
_BACKOFF = tenacity.wait_exponential(multiplier=0.25, min=0.25, max=4.0)


class BmcFailure(Exception):
    """One try failed; `transient` says whether trying again may help."""

    def __init__(self, what: str, *, transient: bool) -> None:
        super().__init__(what)
        self.what = what
        self.transient = transient


class Target:
    """One host's BMC as the driver sees it: for messages, deadlines and retries."""

    def __init__(self, host: Host, target: str | None = None) -> None:
        self.host = host.name
        self.driver = host.power.driver
        self.params = host.power.params
        self.secrets = host.power.secrets
        self.target = target or self.driver
        self.timeout_s = self.number("timeout_s", DEFAULT_TIMEOUT_S)
        self.shutdown_timeout_s = self.number("shutdown_timeout_s", DEFAULT_SHUTDOWN_TIMEOUT_S)

    # -------------------------------------------------------------- parameters

    def _where(self, key: str) -> str:
        return f"host {self.host}: vet_power.{key}"

    def text(self, key: str, default: str | None = None) -> str:
        """A required (or defaulted) text parameter."""
        value = self.params.get(key, default)
        if value is None or value == "":
            raise PowerConfigError(f"{self._where(key)} is missing; the {self.driver} driver "
                                   f"needs it (see docs/POWER.md)")
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise PowerConfigError(f"{self._where(key)} is {value!r}; write a single value")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        return None if self.params.get(key) in (None, "") else self.text(key)

    def number(self, key: str, default: float) -> float:
        value: Any = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or not math.isfinite(value) or value <= 0:
            raise PowerConfigError(f"{self._where(key)} is {value!r}; write a number of "
                                   f"seconds greater than 0, e.g. {key}: {default:g}")
        return float(value)

    def integer(self, key: str, default: int, *, low: int, high: int) -> int:
        value: Any = self.params.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise PowerConfigError(f"{self._where(key)} is {value!r}; write a whole number "
                                   f"from {low} to {high}, e.g. {key}: {default}")
        return int(value)

    def secret(self, key: str) -> str:
        """A required secret; the message never shows a value."""
        value = self.secrets.get(key)
        if not value:
            raise PowerConfigError(f"{self._where(key)} is missing; the {self.driver} driver "
                                   "needs it (vault it with ansible-vault encrypt_string)")
        return value

    # -------------------------------------------------------------- failures

    def error(self, action: str, what: str, cls: type[E] = PowerError) -> E:  # type: ignore[assignment]
        return cls(f"host {self.host}: {self.driver} power {action} via {self.target} "
                   f"failed: {what}")

    def attempt(self, action: str, one_try: Callable[[float], T], *,
                timeout_s: float | None = None) -> T:
        """Run `one_try(seconds_left)` until it succeeds, fails for good, or time is up."""
        bound = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + bound
        tries = 0

        def call() -> T:
            nonlocal tries
            tries += 1
            return one_try(max(0.1, deadline - time.monotonic()))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(
                lambda exc: isinstance(exc, BmcFailure) and exc.transient),
            stop=tenacity.stop_before_delay(bound),
            wait=_BACKOFF,
            reraise=True,
        )
        try:
            return retrying(call)
        except BmcFailure as exc:
            if exc.transient:
                raise self.error(action, f"{exc.what} (still failing after {tries} "
                                         f"tries in {bound:g} s)") from None
            raise self.error(action, exc.what) from None

    def poll_until_off(self, action: str, is_on: Callable[[], bool], *,
                       interval_s: float = 1.0) -> None:
        """Wait up to shutdown_timeout_s for `is_on()` to say False.

        A remote BMC sends no event when the power changes, so asking again every
        `interval_s` is the only way to see it; the wait is bounded all the same.
        """
        deadline = time.monotonic() + self.shutdown_timeout_s
        while is_on():
            left = deadline - time.monotonic()
            if left <= 0:
                raise self.still_on(action)
            time.sleep(min(interval_s, left))

    def still_on(self, action: str) -> GracefulOffTimeout:
        """The error for an OS that did not power down after the ACPI power button."""
        return self.error(action, f"the OS was asked to power down (ACPI power button) but "
                                   f"the host is still on after {self.shutdown_timeout_s:g} s; "
                                   "it may have no OS running or ignore the button. Force it "
                                   "with a hard off (off() without graceful)",
                          GracefulOffTimeout)
