"""The new probes and judges on output of the real tools, run here.

- ipmitool 1.8.19 against OpenIPMI's `ipmi_sim` (a BMC simulator with SDRs compiled by
  `sdrcomp`) on 127.0.0.1: PSU sensors changed at run time through the simulator's console.
- ethtool on a veth pair in a network namespace the test creates and removes.
- smartctl on things that are not SMART disks (a file): every answer must be "inconclusive".
- dmesg of this machine, and the EDAC collection command on this machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.judge import Verdict, judge_edac, judge_ethtool, judge_ipmitool, judge_smartctl
from harness.probes.edac import EDAC_COMMAND, parse_edac
from harness.probes.ethtool import parse_ethtool, parse_ethtool_stats
from harness.probes.ipmitool import parse_ipmitool
from harness.probes.kernel_log import parse_kernel_log
from harness.probes.smartctl import parse_smartctl
from tests.helpers import gone

TIMEOUT = 20.0

SDRS = """
sdr type 18
\tdevice_slave_address\t0x20
\tdevice_channel_number\t0
\tchassis\t\t\ttrue
\tipmb_event_gen\t\tfalse
\tipmb_event_recv\t\tfalse
\tfru_inventory\t\tfalse
\tsel\t\t\ttrue
\tsdr\t\t\ttrue
\tsensor\t\t\ttrue
\tentity_id\t\tsystem_board
\tentity_instance\t\t1
\tid_string\t\t"vet BMC"
endsdr
""" + "".join(f"""
sdr type 1
\tsensor_owner_id\t\t0x20
\tsensor_owner_lun\t0
\tchannel_number\t\t0
\tsensor_number\t\t{number}
\tentity_id\t\t{entity}
\tentity_instance\t\t{instance}
\tinit_scanning\t\ttrue
\tdefault_sensor_scan_on\ttrue
\tsensor_type\t\tPower_Supply
\tevent_reading_type_code\t{reading_type}
\tid_string\t\t"{name}"
endsdr
""" for number, entity, instance, reading_type, name in (
    (2, "power_supply", 1, "0x6f", "PS1 Status"),
    (3, "power_supply", 2, "0x6f", "PS2 Status"),
    (4, "power_unit", 1, "0x0b", "PS Redundancy"),
)) + """
sdr type 1
\tsensor_owner_id\t\t0x20
\tsensor_owner_lun\t0
\tchannel_number\t\t0
\tsensor_number\t\t5
\tentity_id\t\tsystem_board
\tentity_instance\t\t1
\tinit_scanning\t\ttrue
\tdefault_sensor_scan_on\ttrue
\tsensor_type\t\tTemperature
\tevent_reading_type_code\t1
\tanalog_data_format\tunsigned
\tbase_unit\t\tdegrees_C
\tlinearization\t\tlinear
\tm\t\t\t1
\tb\t\t\t0
\tr_exp\t\t\t0
\tb_exp\t\t\t0
\tunc_thrsh_readable\ttrue
\tuc_thrsh_readable\ttrue
\tsensor_maximum\t\t255
\tsensor_minimum\t\t0
\tid_string\t\t"Inlet Temp"
endsdr
"""
# A healthy BMC: both PSUs present, fully redundant, 23 C inlet (upper thresholds 42/48 C).
EMU = """mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 50 0x0a
sensor_add 0x20 0 2 0x08 0x6f
sensor_add 0x20 0 3 0x08 0x6f
sensor_add 0x20 0 4 0x08 0x0b
sensor_add 0x20 0 5 0x01 0x01
sensor_set_bit_clr_rest 0x20 0 2 0 1 0
sensor_set_bit_clr_rest 0x20 0 3 0 1 0
sensor_set_bit_clr_rest 0x20 0 4 0 1 0
sensor_set_value 0x20 0 5 23 0
sensor_set_threshold 0x20 0 5 settable 011000 0 0x30 0x2a 00 00 00
mc_enable 0x20
"""


PACKAGE = {"ipmi_sim": "openipmi", "sdrcomp": "openipmi", "ip": "iproute2",
           "smartctl": "smartmontools", "dmesg": "util-linux"}


def _need(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install {PACKAGE.get(tool, tool)})")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SimBmc:
    """A running ipmi_sim: its console (stdin/stdout) changes sensors, ipmitool reads them."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_udp_port()
        self.password = secrets.token_hex(8)
        state = workdir / "state" / "ipmi_sim" / "vetsim"
        state.mkdir(parents=True)
        (workdir / "bmc.sdrs").write_text(SDRS)
        compiled = subprocess.run(["sdrcomp", str(workdir / "bmc.sdrs")], capture_output=True,
                                  check=True, timeout=TIMEOUT)
        (state / "sdr.20.main").write_bytes(compiled.stdout)
        config = workdir / "lan.conf"
        config.touch(mode=0o600)
        config.write_text(
            'name "vetsim"\nset_working_mc 0x20\n  startlan 1\n'
            f"    addr 127.0.0.1 {self.port}\n    priv_limit admin\n"
            "    allowed_auths_admin md5\n    guid a123456789abcdefa123456789abcdef\n"
            f'  endlan\n  user 2 true "admin" "{self.password}" admin 4 md5\n')
        (workdir / "bmc.emu").write_text(EMU)
        self._text = ""
        self._changed = threading.Condition()
        self.process = subprocess.Popen(
            ["ipmi_sim", "-c", str(config), "-f", str(workdir / "bmc.emu"),
             "-s", str(workdir / "state")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._prompts = 1
        self._wait_for_prompt()  # the emu file ran and the LAN channel is bound

    def _read(self) -> None:
        assert self.process.stdout is not None
        descriptor = self.process.stdout.fileno()
        for chunk in iter(lambda: os.read(descriptor, 4096), b""):
            with self._changed:
                self._text += chunk.decode(errors="replace")
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _wait_for_prompt(self) -> None:
        with self._changed:
            done = self._changed.wait_for(
                lambda: self._text.count("> ") >= self._prompts or self.process.poll() is not None,
                timeout=TIMEOUT)
            assert done and self.process.poll() is None, (
                f"ipmi_sim did not come up (exit {self.process.poll()}): {self._text[-400:]}")

    def console(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(command.encode() + b"\n")
        self.process.stdin.flush()
        self._prompts += 1
        self._wait_for_prompt()

    def ipmitool(self, *args: str) -> str:
        """Real ipmitool over lanplus; the password travels in the environment (-E), not argv.

        -C 3 names the cipher suite: without it ipmitool first asks for the list, which the
        simulator does not answer, and waits ~9 s before falling back.
        """
        env = dict(os.environ, IPMITOOL_PASSWORD=self.password)
        result = subprocess.run(
            ["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.port), "-U", "admin",
             "-E", "-C", "3", "-N", "2", "-R", "3", *args],
            capture_output=True, text=True, env=env, timeout=TIMEOUT, check=True)
        assert self.password not in result.stdout + result.stderr
        return result.stdout

    def stop(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self._quit()
        try:
            self.process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=TIMEOUT)
        self._reader.join(timeout=TIMEOUT)

    def _quit(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"quit\n")
        self.process.stdin.close()


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[SimBmc]:
    _need("ipmi_sim", "sdrcomp", "ipmitool")
    sim = SimBmc(tmp_path)
    try:
        yield sim
    finally:
        sim.stop()
        assert gone(sim.process.pid)


@pytest.mark.parametrize("command", [("sdr", "elist"), ("sensor",)])
def test_ipmitool_psu_states_from_a_simulated_bmc(bmc: SimBmc, command: tuple[str, ...]) -> None:
    healthy = parse_ipmitool(bmc.ipmitool(*command))
    assert healthy.format == " ".join(command)
    assert [s.conditions for s in healthy.psu_sensors] == [("present",), ("present",),
                                                            ("redundant",)]
    assert judge_ipmitool(healthy).verdict is Verdict.HEALTHY

    bmc.console("sensor_set_bit 0x20 0 3 1 1 0")  # PS2: failure detected
    bmc.console("sensor_set_bit 0x20 0 3 3 1 0")  # PS2: AC lost
    bmc.console("sensor_set_bit_clr_rest 0x20 0 4 1 1 0")  # redundancy lost
    failed = parse_ipmitool(bmc.ipmitool(*command))
    ps2 = next(s for s in failed.sensors if s.name == "PS2 Status")
    assert ps2.conditions == ("present", "failed", "ac-lost")
    judgement = judge_ipmitool(failed)
    assert judgement.verdict is Verdict.FAILING
    assert judgement.reasons[0].startswith("BMC sensor 'PS2 Status'")
    assert any("Redundancy Lost" in r for r in judgement.reasons)


def test_ipmitool_threshold_breach(bmc: SimBmc) -> None:
    bmc.console("sensor_set_value 0x20 0 5 0x2c 0")  # 44 C: above 42 (non-critical)
    warm = judge_ipmitool(parse_ipmitool(bmc.ipmitool("sensor")))
    assert warm.verdict is Verdict.WARNING and "'Inlet Temp' reads 44 degrees C" in warm.reasons[0]
    bmc.console("sensor_set_value 0x20 0 5 0x31 0")  # 49 C: above 48 (critical)
    hot = parse_ipmitool(bmc.ipmitool("sdr", "elist"))
    assert judge_ipmitool(hot).verdict is Verdict.FAILING


@contextlib.contextmanager
def veth_pair() -> Iterator[tuple[str, str]]:
    netns = f"vet-ethtool-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", netns], check=True, timeout=TIMEOUT)
    try:
        for args in (["link", "add", "va", "type", "veth", "peer", "name", "vb"],
                     ["link", "set", "va", "up"], ["link", "set", "vb", "up"]):
            subprocess.run(["ip", "-n", netns, *args], check=True, timeout=TIMEOUT)
        yield netns, "va"
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True, timeout=TIMEOUT)
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True,
                                check=True, timeout=TIMEOUT).stdout
        assert netns not in listed


def _ethtool(netns: str, *args: str) -> str:
    return subprocess.run(["ip", "netns", "exec", netns, "ethtool", *args], capture_output=True,
                          text=True, check=True, timeout=TIMEOUT).stdout


def test_ethtool_on_a_veth_pair() -> None:
    _need("ethtool", "ip")
    with veth_pair() as (netns, iface):
        up = parse_ethtool(_ethtool(netns, iface))
        assert (up.interface, up.link_detected, up.speed_mbps) == (iface, True, 10000)
        assert judge_ethtool(up).verdict is Verdict.HEALTHY
        stats = parse_ethtool_stats(_ethtool(netns, "-S", iface))
        assert "peer_ifindex" in stats.counters and stats.errors() == {}
        subprocess.run(["ip", "-n", netns, "link", "set", "vb", "down"], check=True,
                       timeout=TIMEOUT)
        down = parse_ethtool(_ethtool(netns, iface))
        assert down.link_detected is False
        assert "no link" in judge_ethtool(down).reasons[0]


@pytest.mark.parametrize(("device_type", "exit_status"), [(None, 1), ("nvme", 2), ("sat", 4)])
def test_smartctl_on_a_file_is_inconclusive(tmp_path: Path, device_type: str | None,
                                            exit_status: int) -> None:
    _need("smartctl")
    image = tmp_path / "not-a-disk.img"
    image.write_bytes(b"\0" * 65536)
    args = ["smartctl", "-x", "-j", *(["-d", device_type] if device_type else []), str(image)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=TIMEOUT)
    report = parse_smartctl(result.stdout)
    assert report.exit_status is not None and report.exit_status.value == exit_status
    assert result.returncode == exit_status
    judgement = judge_smartctl(report)
    assert judgement.inconclusive
    assert judgement.reasons[0].startswith(f"inconclusive: {image}")


def test_dmesg_of_this_machine_parses() -> None:
    _need("dmesg")
    result = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=TIMEOUT)
    if result.returncode != 0:
        pytest.skip(f"dmesg is not readable here: {result.stderr.strip()}")
    log = parse_kernel_log(result.stdout)
    assert log.format == "dmesg" and log.line_count == len(result.stdout.splitlines())
    assert all(1 <= f.line <= log.line_count for f in log.findings)


def test_edac_command_on_this_machine() -> None:
    result = subprocess.run(["sh", "-c", EDAC_COMMAND], capture_output=True, text=True,
                            timeout=TIMEOUT)
    counters = parse_edac(result.stdout)
    has_edac = Path("/sys/devices/system/edac/mc/mc0").is_dir()
    assert counters.available is has_edac
    judgement = judge_edac(counters)
    assert judgement.inconclusive is not has_edac
