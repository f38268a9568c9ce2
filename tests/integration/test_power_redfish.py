"""The redfish driver against the lab Redfish service (sushy-tools + QMP) and a real guest."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness.models import Connection, Host, PowerConfig
from harness.power import (
    GracefulOffTimeout,
    PowerConfigError,
    PowerError,
    PowerState,
    power_driver,
)
from harness.power.qmp import QmpGuest
from tests.fixtures.lab_bmc import RunningBmc, start_bmc
from tests.fixtures.qemu_guest import QemuGuest, start_guest

PASSWORD = "s3cret-redfish-pass"


@pytest.fixture(scope="module")
def guest() -> Iterator[QemuGuest]:
    with start_guest() as started:
        yield started


@pytest.fixture(autouse=True)
def powered_off(guest: QemuGuest) -> None:
    """Each test starts from a powered-off guest (the guest is shared by the module)."""
    QmpGuest(guest.qmp).power_off()


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                          content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, encipher_only=False,
                          decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA and a BMC certificate for 127.0.0.1 signed by it (made here, not shipped)."""
    folder = tmp_path_factory.mktemp("tls")
    ca_key, bmc_key = _key(), _key()
    ca = _cert("vet test CA", ca_key, None, ca_key, ca=True)
    bmc = _cert("127.0.0.1", bmc_key, ca.subject, ca_key, ca=False)
    paths = {"ca": folder / "ca.pem", "cert": folder / "bmc.pem", "key": folder / "bmc.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(bmc.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(bmc_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


@contextlib.contextmanager
def _service(guest: QemuGuest, folder: Path, *extra: str) -> Iterator[RunningBmc]:
    """The lab Redfish service; its temporary files (the user file) must be gone after."""
    password_file = folder / "redfish.pass"
    password_file.write_text(PASSWORD + "\n")
    scratch = folder / "tmp"
    scratch.mkdir()
    with start_bmc("harness.lab.redfish",
                   ["--address", "127.0.0.1", "--port", "0", "--guest",
                    f"guest1={guest.qmp_bmc}", "--username", "admin", "--password-file",
                    str(password_file), *extra], folder / "redfish.log",
                   env={"TMPDIR": str(scratch)}) as running:
        assert len(list(scratch.iterdir())) == 1  # the private dir with the user file
        yield running
    assert list(scratch.iterdir()) == []
    assert PASSWORD not in running.log.read_text()


@pytest.fixture(scope="module")
def http_service(guest: QemuGuest,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBmc]:
    with _service(guest, tmp_path_factory.mktemp("http")) as running:
        yield running


@pytest.fixture(scope="module")
def https_service(guest: QemuGuest, tls: dict[str, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBmc]:
    with _service(guest, tmp_path_factory.mktemp("https"), "--cert", str(tls["cert"]),
                  "--key", str(tls["key"])) as running:
        yield running


def _host(url: str, password: str = PASSWORD, **params: Any) -> Host:
    return Host(name="node09", connection=Connection(kind="local"),
                power=PowerConfig(driver="redfish",
                                  params={"url": url, "username": "admin", "timeout_s": 10,
                                          **params},
                                  secrets={"password": password}))


def _cycle_through(driver: Any, guest: QemuGuest) -> None:
    look = QmpGuest(guest.qmp)
    assert driver.status() is PowerState.OFF
    driver.on()
    assert look.run_state() == "running"
    assert driver.status() is PowerState.ON
    driver.off()
    assert not look.is_on()
    assert driver.status() is PowerState.OFF
    driver.cycle()  # off -> On
    assert look.run_state() == "running"
    driver.cycle()  # on -> ForceRestart
    assert driver.status() is PowerState.ON
    driver.off()
    assert driver.status() is PowerState.OFF


def test_http_on_off_status_cycle(guest: QemuGuest, http_service: RunningBmc) -> None:
    driver = power_driver(_host(f"http://127.0.0.1:{http_service.port}"))
    _cycle_through(driver, guest)
    log = http_service.log.read_text()
    for reset in ("On", "ForceOff", "ForceRestart"):
        assert f"redfish guest1: {reset}" in log


def test_https_with_ca_file(guest: QemuGuest, https_service: RunningBmc,
                            tls: dict[str, Path]) -> None:
    driver = power_driver(_host(f"https://127.0.0.1:{https_service.port}",
                                ca_file=str(tls["ca"])))
    _cycle_through(driver, guest)


def test_https_without_verification(guest: QemuGuest, https_service: RunningBmc) -> None:
    driver = power_driver(_host(f"https://127.0.0.1:{https_service.port}", verify_tls=False))
    _cycle_through(driver, guest)


def test_https_self_signed_is_refused_by_default(https_service: RunningBmc) -> None:
    driver = power_driver(_host(f"https://127.0.0.1:{https_service.port}"))
    with pytest.raises(PowerError) as caught:
        driver.status()
    text = str(caught.value)
    assert f"host node09: redfish power status via Redfish service https://127.0.0.1:" \
           f"{https_service.port} failed: TLS verification" in text
    assert "certificate verify failed" in text
    assert "ca_file" in text and "verify_tls: false" in text


def test_wrong_password(http_service: RunningBmc) -> None:
    driver = power_driver(_host(f"http://127.0.0.1:{http_service.port}",
                                password="not-the-password"))
    started = time.monotonic()
    with pytest.raises(PowerError) as caught:
        driver.on()
    assert time.monotonic() - started < 5  # not retried
    text = str(caught.value)
    assert "authentication failed, HTTP 401" in text and "vet_power.password" in text
    assert "not-the-password" not in text and PASSWORD not in text


def test_graceful_off_without_os_is_bounded(http_service: RunningBmc) -> None:
    driver = power_driver(_host(f"http://127.0.0.1:{http_service.port}",
                                shutdown_timeout_s=1.5))
    driver.on()
    with pytest.raises(GracefulOffTimeout) as caught:
        driver.off(graceful=True)
    assert "still on after 1.5 s" in str(caught.value)
    assert "redfish guest1: GracefulShutdown" in http_service.log.read_text()


@pytest.mark.filterwarnings("ignore:'cgi' is deprecated:DeprecationWarning")  # webob, in sushy
def test_system_named_by_id_or_name_and_unknown(http_service: RunningBmc) -> None:
    from harness.lab.redfish import system_uuid

    url = f"http://127.0.0.1:{http_service.port}"
    by_uuid = power_driver(_host(url, system_id=system_uuid("guest1")))
    by_name = power_driver(_host(url, system_id="guest1"))  # answered with 307 to the UUID
    assert by_uuid.status() is by_name.status() is PowerState.OFF
    answer = requests.get(f"{url}/redfish/v1/Systems/guest1", auth=("admin", PASSWORD),
                          allow_redirects=False, timeout=10)
    assert answer.status_code == 307
    assert answer.headers["Location"].endswith(f"/redfish/v1/Systems/{system_uuid('guest1')}")
    with pytest.raises(PowerError) as caught:
        power_driver(_host(url, system_id="nosuch")).status()
    assert "HTTP 404" in str(caught.value) and "no system 'nosuch'" in str(caught.value)


def test_nothing_listening_fails_within_the_bound(http_service: RunningBmc) -> None:
    # The lab service's port plus one is not ours to assume free: use a closed listener.
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    driver = power_driver(_host(f"http://127.0.0.1:{port}", timeout_s=2))
    started = time.monotonic()
    with pytest.raises(PowerError) as caught:
        driver.status()
    assert time.monotonic() - started < 5
    assert "Connection refused" in str(caught.value) and "tries in 2 s" in str(caught.value)


def test_bad_tls_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(PowerConfigError) as caught:
        power_driver(_host("https://127.0.0.1:1", ca_file=str(tmp_path / "missing.pem")))
    assert "vet_power.ca_file" in str(caught.value) and "missing.pem" in str(caught.value)
