"""Driver "redfish": ComputerSystem.Reset and PowerState over HTTP(S) with `requests`.

The few calls vet needs (read the System, POST one Reset) do not justify a Redfish
client library; `requests` gives timeouts, TLS verification against a CA bundle,
basic auth and redirects (name URLs answering 307 to UUID URLs), and keeps the
password out of URLs and messages.

Parameters: url, username, password (secret), system_id (else discovered from
/redfish/v1/Systems, which must then hold exactly one System), verify_tls (default
true) or ca_file (a CA bundle to verify the BMC's certificate), timeout_s,
shutdown_timeout_s.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from harness.models import Host
from harness.power import PowerConfigError, PowerState
from harness.power.target import BmcFailure, Target

__all__ = ["RedfishDriver"]

#: One HTTP request waits at most this long (and never past the action's deadline).
_REQUEST_S = 15.0
_STATES = {"On": PowerState.ON, "Off": PowerState.OFF, "Paused": PowerState.ON}
_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_TLS_TEXT = re.compile(r"\[SSL: [A-Z_]+\] ([^(']+)")


def _reason(exc: requests.RequestException) -> str:
    """The useful part of requests' long exception text (no URL, no credentials)."""
    text = str(exc)
    tls = _TLS_TEXT.search(text)
    if tls:
        return tls.group(1).strip()
    match = _ERRNO_TEXT.search(text)
    if match:
        return match.group(1).strip().rstrip(",")
    if isinstance(exc, requests.Timeout):
        return "no answer in time"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the connection was closed without an answer"
    return type(exc).__name__


def _redfish_message(response: requests.Response) -> str:
    """The BMC's own words from a Redfish error body, if it sent any."""
    try:
        body: Any = response.json()
    except ValueError:
        return response.reason or ""
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return response.reason or ""
    for info in error.get("@Message.ExtendedInfo") or []:
        if isinstance(info, dict) and info.get("Message"):
            return str(info["Message"])
    return str(error.get("message") or response.reason or "")


class RedfishDriver:
    """Power through a Redfish service's ComputerSystem."""

    driver = "redfish"

    def __init__(self, host: Host) -> None:
        target = Target(host)
        self._url = target.text("url").rstrip("/")
        target.target = f"Redfish service {self._url}"
        self._target = target
        self._session = requests.Session()
        self._session.auth = (target.text("username"), target.secret("password"))
        self._session.headers.update({"Accept": "application/json",
                                      "OData-Version": "4.0"})
        # Given with every request: a session-wide verify loses to REQUESTS_CA_BUNDLE.
        self._tls_verify = self._verify(host)
        self._system_id = target.optional_text("system_id")
        self._system: str | None = None  # the System's path, once known

    def _verify(self, host: Host) -> bool | str:
        ca_file = self._target.optional_text("ca_file")
        verify_tls = host.power.params.get("verify_tls", True)
        if not isinstance(verify_tls, bool):
            raise PowerConfigError(f"host {host.name}: vet_power.verify_tls {verify_tls!r} "
                                   "is not true/false; write verify_tls: false")
        if ca_file is None:
            return verify_tls
        if not verify_tls:
            raise PowerConfigError(f"host {host.name}: vet_power has both ca_file and "
                                   "verify_tls: false; keep ca_file to verify the BMC's "
                                   "certificate, or drop it to skip verification")
        if not Path(ca_file).is_file():
            raise PowerConfigError(f"host {host.name}: vet_power.ca_file {ca_file!r} is not "
                                   "a readable file; give the path of the CA bundle (PEM) "
                                   "that signed the BMC's certificate")
        return ca_file

    # ------------------------------------------------------------ HTTP

    def _request(self, method: str, path: str, left: float,
                 body: dict[str, Any] | None = None) -> requests.Response:
        url = path if path.startswith("http") else self._url + path
        try:
            with warnings.catch_warnings():
                # verify_tls: false is the operator's explicit choice; say it once in docs,
                # not on every request.
                warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
                response = self._session.request(method, url, json=body,
                                                 verify=self._tls_verify,
                                                 timeout=min(left, _REQUEST_S))
        except requests.exceptions.SSLError as exc:
            raise BmcFailure(f"TLS verification of {self._url} failed ({_reason(exc)}); give "
                             "the CA that signed the BMC's certificate as vet_power.ca_file, "
                             "or set vet_power.verify_tls: false", transient=False) from None
        except requests.RequestException as exc:
            raise BmcFailure(f"cannot reach {self._url}: {_reason(exc)}",
                             transient=True) from None
        if response.status_code in (401, 403):
            raise BmcFailure(f"the Redfish service rejected the login (authentication "
                             f"failed, HTTP {response.status_code}): check vet_power.username "
                             "and vet_power.password", transient=False)
        if response.status_code == 404:
            raise BmcFailure(f"{method} {path}: no such resource (HTTP 404): "
                             f"{_redfish_message(response)}", transient=False)
        if response.status_code >= 500 or response.status_code == 429:
            raise BmcFailure(f"{method} {path}: HTTP {response.status_code}: "
                             f"{_redfish_message(response)}", transient=True)
        if response.status_code >= 400:
            raise BmcFailure(f"{method} {path}: HTTP {response.status_code}: "
                             f"{_redfish_message(response)}", transient=False)
        return response

    def _json(self, path: str, left: float) -> dict[str, Any]:
        response = self._request("GET", path, left)
        try:
            data = response.json()
        except ValueError:
            raise BmcFailure(f"GET {path} did not answer JSON", transient=False) from None
        if not isinstance(data, dict):
            raise BmcFailure(f"GET {path} did not answer a JSON object", transient=False)
        return data

    def _system_path(self, left: float) -> str:
        if self._system is not None:
            return self._system
        if self._system_id:
            path = (self._system_id if self._system_id.startswith("/")
                    else f"/redfish/v1/Systems/{self._system_id}")
        else:
            members = self._json("/redfish/v1/Systems", left).get("Members") or []
            ids = [str(m.get("@odata.id")) for m in members if isinstance(m, dict)]
            if len(ids) != 1:
                found = ", ".join(i.rsplit("/", 1)[-1] for i in ids) or "none"
                raise BmcFailure(f"/redfish/v1/Systems lists {len(ids)} systems ({found}); "
                                 "set vet_power.system_id to the one this host is",
                                 transient=False)
            path = ids[0]
        # Follow a redirect (a name answering with its UUID URL) once, then keep it.
        response = self._request("GET", path, left)
        self._system = urlsplit(response.url).path.rstrip("/") or path
        return self._system

    def _read_system(self, left: float) -> dict[str, Any]:
        return self._json(self._system_path(left), left)

    def _state(self, left: float) -> PowerState:
        system = self._read_system(left)
        value = system.get("PowerState")
        if value in ("PoweringOn", "PoweringOff"):
            raise BmcFailure(f"the system is {value}", transient=True)
        if value not in _STATES:
            raise BmcFailure(f"the system's PowerState is {value!r}, not On or Off",
                             transient=False)
        return _STATES[value]

    def _reset(self, action: str, *choices: str) -> None:
        """POST ComputerSystem.Reset with the first of `choices` the BMC offers."""
        def one_try(left: float) -> None:
            system = self._read_system(left)
            reset = (system.get("Actions") or {}).get("#ComputerSystem.Reset") or {}
            target = reset.get("target") or f"{self._system_path(left)}/Actions/" \
                                             "ComputerSystem.Reset"
            allowed = reset.get("ResetType@Redfish.AllowableValues")
            wanted = choices[0]
            if isinstance(allowed, list):
                offered = [c for c in choices if c in allowed]
                if not offered:
                    raise BmcFailure(f"the BMC offers no ResetType for this "
                                     f"({' or '.join(choices)}); it offers: "
                                     f"{', '.join(map(str, allowed))}", transient=False)
                wanted = offered[0]
            self._request("POST", str(target), left, {"ResetType": wanted})

        self._target.attempt(action, one_try)

    # ------------------------------------------------------------ the driver

    def status(self) -> PowerState:
        return self._target.attempt("status", self._state)

    def on(self) -> None:
        if self.status() is PowerState.OFF:
            self._reset("on", "On", "ForceOn")

    def off(self, *, graceful: bool = False) -> None:
        if self.status() is PowerState.OFF:
            return
        if not graceful:
            self._reset("off", "ForceOff")
            return
        self._reset("soft off", "GracefulShutdown")
        self._target.poll_until_off("soft off", lambda: self.status() is PowerState.ON)

    def cycle(self) -> None:
        if self.status() is PowerState.OFF:
            self._reset("cycle", "On", "ForceOn")
        else:
            self._reset("cycle", "ForceRestart", "PowerCycle", "GracefulRestart")
