"""MQTT publishing against a real mosquitto broker on 127.0.0.1 (docs/MQTT.md)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.events import EventLog
from harness.models import MqttConfig
from harness.mqtt import MqttPublisher, topics
from tests.fixtures.mosquitto import Broker, Subscriber, free_port

RUN = "20261122-093000-beef"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    server = Broker(tmp_path, websockets=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def events(tmp_path: Path) -> Iterator[EventLog]:
    log = EventLog(tmp_path / "node01" / "events.jsonl", RUN, "node01")
    yield log
    log.close()


def _state(events: EventLog, old: str, new: str, stage: str | None = None) -> None:
    events.emit("harness", "state", stage=stage, reason=f"to {new}", **{"from": old, "to": new})


def test_state_and_log_messages_reach_a_subscriber(broker: Broker, events: EventLog) -> None:
    subscriber = Subscriber(broker.port, "vet/#")
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port))
    try:
        publisher.attach(events)
        _state(events, "Registered", "Queued")
        events.emit("console", "line", text="[    1.234] EDAC MC0: 1 CE on DIMM_A1")
        events.emit("harness", "progress", stage="cpu", percent=42.0, figure="1.2 Tops")
        # The console as a run logs it: one event (one message) per read of its lines.
        events.emit_lines("console", ["[    1.300] ata1: link up", "[    1.301] \"sda\""],
                          1_795_339_710.25)
        state_topic, log_topic = topics("vet", RUN, "node01")
        assert state_topic == f"vet/{RUN}/node01/state"
        [state] = subscriber.wait_for(1, topic_suffix="/state")
        logs = subscriber.wait_for(3, topic_suffix="/log")
    finally:
        subscriber.close()
        publisher.close()
        counts = publisher.counts
    assert state.topic == state_topic and state.qos == 1
    body = json.loads(state.payload)
    assert (body["run"], body["host"], body["kind"], body["from"], body["to"]) == (
        RUN, "node01", "state", "Registered", "Queued")
    assert [m.topic for m in logs] == [log_topic] * 3
    assert all(m.qos == 0 and not m.retain for m in logs)
    assert json.loads(logs[0].payload)["text"] == "[    1.234] EDAC MC0: 1 CE on DIMM_A1"
    assert json.loads(logs[1].payload)["percent"] == 42.0
    batch = json.loads(logs[2].payload)
    assert (batch["kind"], batch["at"], batch["lines"]) == (
        "lines", 1_795_339_710.25, ["[    1.300] ata1: link up", '[    1.301] "sda"'])
    # The payloads are the events as written to events.jsonl, byte for byte as JSON.
    on_disk = [json.loads(line) for line in events.path.read_text().splitlines()]
    assert [json.loads(m.payload) for m in (state, *logs)] == on_disk
    assert (counts.published, counts.dropped, counts.not_sent) == (4, 0, 0)

    # Retained: a dashboard that subscribes afterwards still sees the host's state.
    late = Subscriber(broker.port, f"vet/{RUN}/+/state")
    try:
        [retained] = late.wait_for(1)
    finally:
        late.close()
    assert retained.retain and json.loads(retained.payload)["to"] == "Queued"


def test_a_browser_style_websockets_subscriber_gets_the_state(broker: Broker,
                                                              events: EventLog) -> None:
    assert broker.ws_port is not None
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port))
    try:
        publisher.attach(events)
        _state(events, "Queued", "PowerOn")
        assert publisher.connected.wait(10)
        ws = Subscriber(broker.ws_port, "vet/+/+/state", transport="websockets")
        try:
            [message] = ws.wait_for(1)
        finally:
            ws.close()
    finally:
        publisher.close()
    assert json.loads(message.payload)["to"] == "PowerOn" and message.retain


@pytest.mark.parametrize("broker_kind", ["nothing listening", "accepts but never answers"])
def test_a_dead_broker_never_slows_or_fails_the_emitter(events: EventLog,
                                                        broker_kind: str) -> None:
    port = free_port()
    listener = None
    if broker_kind != "nothing listening":
        # A "slow" broker: the kernel completes the TCP handshake, nobody ever speaks MQTT.
        listener = socket.create_server(("127.0.0.1", 0), backlog=8)
        port = listener.getsockname()[1]
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=port, queue_size=100))
    try:
        publisher.attach(events)
        started = time.perf_counter()
        slowest = 0.0
        for n in range(1000):
            one = time.perf_counter()
            if n % 100 == 0:
                _state(events, "CPUStress", "CPUStress", stage="cpu")
            else:
                events.emit("console", "line", text=f"line {n}")
            slowest = max(slowest, time.perf_counter() - one)
        emit_s = time.perf_counter() - started
        closing = time.perf_counter()
        publisher.close(flush_s=1.0)
        counts = publisher.counts
        close_s = time.perf_counter() - closing
    finally:
        if listener is not None:
            listener.close()
    # 1000 events written to disk and offered to MQTT: ~0.15 s here (~0.07 s without
    # MQTT); an emit that waited on the broker would take the connect timeout (5 s).
    assert emit_s < 2.0, f"1000 emits took {emit_s:.3f} s with the broker down"
    assert slowest < 0.5, f"one emit took {slowest:.3f} s with the broker down"
    assert close_s < 8.0
    assert counts.published == 0
    # Everything is accounted for: a full queue drops, the rest was never sent.
    assert counts.dropped + counts.not_sent == 1000
    assert len(events.path.read_text().splitlines()) == 1000  # the run's own log is whole


def test_state_messages_after_a_broker_restart_arrive(broker: Broker, events: EventLog) -> None:
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port),
                              reconnect_max_s=2)
    try:
        publisher.attach(events)
        _state(events, "Queued", "PowerOn")
        assert publisher.connected.wait(10)
        first = Subscriber(broker.port, "vet/+/+/state")
        try:
            assert json.loads(first.wait_for(1)[0].payload)["to"] == "PowerOn"
        finally:
            first.close()

        broker.restart()  # killed and started again on the same port (no persistence)
        _state(events, "PowerOn", "Booting")  # paho keeps it (QoS 1) until it reconnects
        after = Subscriber(broker.port, "vet/+/+/state")
        try:
            message = after.wait_for(1, timeout=20)[0]
        finally:
            after.close()
        _state(events, "Booting", "InventoryCheck")
    finally:
        publisher.close()
        counts = publisher.counts
    assert json.loads(message.payload)["to"] == "Booting"
    assert counts.dropped == 0 and counts.not_sent == 0


RUN_INVENTORY = """\
all:
  vars:
    vet_mqtt: {{host: 127.0.0.1, port: {port}, topic_prefix: lab/vet}}
  children:
    rack:
      hosts:
        node01: {{vet_macs: ["52:54:00:00:00:01"], ansible_connection: local}}
"""

STAGE = """\
import pytest

pytestmark = [pytest.mark.stage, pytest.mark.{stage}]


def test_{stage}(host):
    assert host.run("echo {stage} ran").ok
"""


def test_a_real_run_publishes_its_states(pytester: pytest.Pytester, broker: Broker) -> None:
    pytester.makefile(".yml", hosts=RUN_INVENTORY.format(port=broker.port))
    for stage in ("inventory", "cpu"):
        pytester.makepyfile(**{f"test_{stage}": STAGE.format(stage=stage)})
    subscriber = Subscriber(broker.port, "lab/vet/r-mqtt/#")
    try:
        result = pytester.runpytest_subprocess(
            "-p", "harness.pytest_plugin", "--inventory", "hosts.yml", "--run-id", "r-mqtt",
            "-m", "stage", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        states = subscriber.wait_for(5, topic_suffix="/state")
        logs = subscriber.wait_for(1, topic_suffix="/log")
    finally:
        subscriber.close()
    assert {m.topic for m in states} == {"lab/vet/r-mqtt/node01/state"}
    # Reporting and Completed are stored after the host fixture closed the host's event
    # log: they come from the store at the end of the run (MqttPublisher.catch_up).
    assert [json.loads(m.payload)["to"] for m in states] == [
        "Queued", "InventoryCheck", "CPUStress", "Reporting", "Completed"]
    assert all(m.retain or m.qos == 1 for m in states)
    assert any(json.loads(m.payload)["kind"] == "stage-start" for m in logs)


def test_catch_up_publishes_only_what_no_event_carried(broker: Broker, events: EventLog) -> None:
    publisher = MqttPublisher(MqttConfig(host="127.0.0.1", port=broker.port))
    try:
        publisher.attach(events)
        _state(events, "Queued", "CPUStress", stage="cpu")
        emitted_at = json.loads(events.path.read_text().splitlines()[-1])["at"]
        stored = [  # as Store.transitions returns them: one before the event, two after
            {"at": emitted_at - 0.001, "stage": "cpu", "reason": "stage cpu",
             "from_state": "Queued", "to_state": "CPUStress"},
            {"at": emitted_at + 1, "stage": None, "reason": "all stages passed",
             "from_state": "CPUStress", "to_state": "Reporting"},
            {"at": emitted_at + 2, "stage": None, "reason": "vetted",
             "from_state": "Reporting", "to_state": "Completed"},
        ]
        assert publisher.catch_up(RUN, "node01", stored) == 2
    finally:
        publisher.close()  # waits for the broker's acknowledgements
    subscriber = Subscriber(broker.port, "vet/+/+/state")
    try:
        [retained] = subscriber.wait_for(1)
    finally:
        subscriber.close()
    body = json.loads(retained.payload)
    assert (body["kind"], body["from"], body["to"], body["reason"]) == (
        "state", "Reporting", "Completed", "vetted")
    assert publisher.counts.published == 3 and publisher.counts.not_sent == 0
