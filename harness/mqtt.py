"""Live events over MQTT: every per-host event, published for dashboards (docs/MQTT.md).

A host's state changes go to `<prefix>/<run>/<host>/state` (QoS 1, retained: a
dashboard that subscribes later still sees where each host is) and every other event
to `<prefix>/<run>/<host>/log` (QoS 0), each as the event's own JSON.

MQTT is a view, never part of the verdict, so a broker that is down, slow or gone
mid-run must not slow or fail the run:
- the emitter only does `put_nowait` on a bounded queue (full: the message is dropped
  and counted), so `EventLog.emit` never waits on the network;
- a sender thread hands messages to paho-mqtt, whose own network thread
  (`loop_start` + `connect_async`) connects, reconnects with back-off and re-sends
  unacknowledged QoS 1 messages after a reconnect (paho's own queue is bounded too);
- log messages that find no connection are counted, not kept (they are in events.jsonl),
  except while the first connection is being made (at most the connect timeout);
- `close()` waits a bounded time for outstanding state messages, then logs the counts.

paho-mqtt rather than a hand-written client: it is the reference Python client and
does the reconnect and QoS 1 bookkeeping this needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from harness.events import EventLog
from harness.models import MqttConfig
from harness.store import Store

log = logging.getLogger(__name__)

#: Most seconds close() waits for unacknowledged state messages (only while connected).
FLUSH_S = 3.0
#: Most seconds close() waits for paho's network thread to stop.
STOP_S = 5.0
#: State messages paho keeps for a reconnect; older ones beyond it are dropped (counted).
MAX_PAHO_QUEUE = 1000
_TOPIC_UNSAFE = re.compile(r"[/+#\x00\s]")


def topic_level(name: str) -> str:
    """A run id or host name as one topic level: MQTT wildcards and `/` become `_`."""
    return _TOPIC_UNSAFE.sub("_", name) or "_"


def topics(prefix: str, run_id: str, host: str) -> tuple[str, str]:
    """(state topic, log topic) of one host in one run."""
    base = f"{prefix}/{topic_level(run_id)}/{topic_level(host)}"
    return f"{base}/state", f"{base}/log"


@dataclass
class Counts:
    """What happened to the messages of one publisher (logged by close())."""

    queued: int = 0
    published: int = 0  # handed to the socket (QoS 0) or acknowledged (QoS 1)
    dropped: int = 0  # the queue (vet's or paho's) was full
    not_sent: int = 0  # no connection: log lines dropped, state messages never acknowledged


class MqttPublisher:
    """Publishes the events of one or more EventLogs to one broker, never blocking them."""

    def __init__(self, config: MqttConfig, client_id: str | None = None,
                 reconnect_max_s: int = 30) -> None:
        self.config = config
        self.counts = Counts()
        self.connected = threading.Event()
        #: Set once the first connection attempt succeeded or failed.
        self._first_attempt = threading.Event()
        self._queue: queue.Queue[tuple[str, bytes, int, bool] | None] = queue.Queue(
            maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._pending: set[int] = set()  # QoS 1 mids not yet acknowledged
        self._acked_early: set[int] = set()  # acknowledged before publish() returned
        self._idle = threading.Condition(self._lock)
        self._closed = False
        self._last_error: str | None = None
        #: When the latest state event of each (run, host) happened (see catch_up).
        self._last_state_at: dict[tuple[str, str], float] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"vet-{uuid.uuid4().hex[:12]}",
        )
        self._client.max_queued_messages_set(MAX_PAHO_QUEUE)
        self._client.reconnect_delay_set(min_delay=1, max_delay=reconnect_max_s)
        self._client.connect_timeout = 5.0
        if config.username:
            self._client.username_pw_set(config.username, config.password)
        if config.tls:
            self._client.tls_set(ca_certs=config.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail
        self._client.on_publish = self._on_publish
        self._client.connect_async(config.host, config.port, keepalive=config.keepalive_s)
        self._client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()

    @property
    def endpoint(self) -> str:
        scheme = "mqtts" if self.config.tls else "mqtt"
        return f"{scheme}://{self.config.host}:{self.config.port}"

    # -- the emitter's side: never blocks -----------------------------------------------

    def attach(self, events: EventLog) -> None:
        """Publish every later event of `events` (EventLog.subscribe)."""
        state_topic, log_topic = topics(self.config.topic_prefix, events.run_id, events.host)

        def listener(event: dict[str, Any]) -> None:
            if event.get("kind") == "state":
                self._last_state_at[(events.run_id, events.host)] = float(event["at"])
                self._offer(state_topic, event, qos=1, retain=True)
            else:
                self._offer(log_topic, event, qos=0, retain=False)

        events.subscribe(listener)

    def catch_up(self, run_id: str, host: str, transitions: list[dict[str, Any]]) -> int:
        """Publish stored transitions no state event carried; returns how many.

        The pytest plugin stores a host's last transitions (Reporting, Completed) after
        the host fixture closed its event log, so they never pass the listener; without
        them a dashboard would show the host in its last stage for ever. A transition is
        missed if it was stored after the latest state event (the store writes before the
        event is emitted, both on time.time()). The payload has the event's shape.
        """
        state_topic, _ = topics(self.config.topic_prefix, run_id, host)
        last = self._last_state_at.get((run_id, host), float("-inf"))
        missed = [t for t in transitions if float(t["at"]) > last]
        for t in missed:
            self._offer(state_topic, {
                "at": t["at"], "run": run_id, "host": host, "source": "harness",
                "kind": "state", "command_id": None, "stage": t["stage"],
                "reason": t["reason"], "from": t["from_state"], "to": t["to_state"],
            }, qos=1, retain=True)
        return len(missed)

    def _offer(self, topic: str, event: dict[str, Any], qos: int, retain: bool) -> None:
        if self._closed:
            return
        payload = json.dumps(event, ensure_ascii=False, default=str).encode()
        try:
            self._queue.put_nowait((topic, payload, qos, retain))
        except queue.Full:
            with self._lock:
                self.counts.dropped += 1
            return
        with self._lock:
            self.counts.queued += 1

    # -- the sender thread ----------------------------------------------------------------

    def _send_loop(self) -> None:
        # What is emitted while the first connection is made (a run's first states and
        # lines) waits for it in the bounded queue instead of finding no connection.
        self._first_attempt.wait(self._client.connect_timeout + 1.0)
        while (item := self._queue.get()) is not None and not self._closed:
            topic, payload, qos, retain = item
            if qos == 0 and not self.connected.is_set():
                # Before CONNACK paho would write it behind CONNECT to a broker that may
                # never answer; a log line is not worth keeping (events.jsonl has it).
                with self._lock:
                    self.counts.not_sent += 1
                continue
            try:
                info = self._client.publish(topic, payload, qos=qos, retain=retain)
            except Exception as exc:  # a view must never take the run down
                self._note_error(f"publish failed: {exc!r}")
                with self._lock:
                    self.counts.not_sent += 1
                continue
            with self._lock:
                if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                    self.counts.dropped += 1
                elif qos == 1 and info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                    # NO_CONN: paho keeps a QoS 1 message and sends it after reconnecting.
                    if info.mid in self._acked_early:
                        self._acked_early.discard(info.mid)
                    else:
                        self._pending.add(info.mid)
                elif info.rc != mqtt.MQTT_ERR_SUCCESS:
                    self.counts.not_sent += 1

    # -- paho's network thread ------------------------------------------------------------

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            self._note_error(f"broker refused the connection: {reason}")
            self._first_attempt.set()
            return
        self.connected.set()
        self._first_attempt.set()
        log.info("mqtt: connected to %s", self.endpoint)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()
        self._first_attempt.set()
        if not self._closed:
            self._note_error(f"disconnected: {reason}")

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._first_attempt.set()
        self._note_error("cannot connect")

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._lock:
            self.counts.published += 1
            if mid in self._pending:
                self._pending.discard(mid)
            else:
                self._acked_early.add(mid)
            if not self._pending:
                self._idle.notify_all()

    def _note_error(self, text: str) -> None:
        if text != self._last_error:
            self._last_error = text
            log.warning("mqtt %s: %s", self.endpoint, text)

    # -- the end --------------------------------------------------------------------------

    def close(self, flush_s: float = FLUSH_S) -> None:
        """Send what is queued (bounded wait), stop, and log the counts (`counts`)."""
        if self._closed:
            return
        deadline = time.monotonic() + flush_s
        with contextlib.suppress(queue.Full):  # a stuck sender is left: a daemon thread
            self._queue.put(None, timeout=flush_s)
        self._sender.join(timeout=max(0.0, deadline - time.monotonic()))
        with self._lock:
            while self._pending and self.connected.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(min(left, 0.5))
            self._closed = True
            self.counts.not_sent += len(self._pending) + self._queue.qsize()
            self._pending.clear()
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, daemon=True)
        stopper.start()
        stopper.join(timeout=STOP_S)
        counts = self.counts
        lost = counts.dropped + counts.not_sent
        (log.warning if lost else log.info)(
            "mqtt %s: %d messages published, %d dropped (queue full), %d not sent "
            "(broker unreachable)", self.endpoint, counts.published, counts.dropped,
            counts.not_sent)


def finish_host(publisher: MqttPublisher, store_path: Path, run_id: str, host: str) -> None:
    """At the end of the run: publish the host's missed final states, then close."""
    try:
        with Store(store_path) as store:
            publisher.catch_up(run_id, host, store.transitions(run_id, host))
    except Exception as exc:  # the view must not fail the run's end either
        log.warning("mqtt: cannot read the final states of %s from %s: %s", host,
                    store_path, exc)
    publisher.close()


def publisher_for(config: MqttConfig | None, events: EventLog) -> MqttPublisher | None:
    """A publisher attached to a host's EventLog when vet_mqtt is set, else None."""
    if config is None:
        return None
    publisher = MqttPublisher(config, client_id=f"vet-{topic_level(events.host)}-"
                                                f"{uuid.uuid4().hex[:8]}")
    publisher.attach(events)
    return publisher
