"""Events on an MQTT broker through paho-mqtt (imported only when this output is used).

Topics: ``<prefix>/<source>/<event type>`` for events (not retained) and ``<prefix>/<source>/availability``
(retained): ``online`` while the source delivers, ``offline`` when it goes offline, when the run ends,
and - as the MQTT last will, sent by the broker - when streamvision dies without saying goodbye.

An event counts as delivered once the broker acknowledged it (PUBACK / PUBCOMP for QoS 1 and 2; for
QoS 0, once it was written to a connected socket). At the end of a run, events the broker never
acknowledged count as failed. An unreachable broker is logged at WARNING when the outage starts and when
it ends.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any

from streamvision.errors import SinkError
from streamvision.events.config import MqttOutput
from streamvision.events.event import Event
from streamvision.events.worker import OutputWorker
from streamvision.metrics import Samples
from streamvision.redact import redact_url

log = logging.getLogger(__name__)

_NOT_IN_TOPIC = re.compile(r"[#+/\s\x00]+")

RECONNECT_MIN_S = 1
RECONNECT_MAX_S = 30
"""paho's wait between connection attempts: doubling from the first to the second."""


def topic_part(text: str) -> str:
    """``text`` as one MQTT topic level: wildcards, slashes and spaces become ``_``.

    Example:
        >>> topic_part("rtsp://***@cam:554/live")
        'rtsp:_***@cam:554_live'
    """
    return _NOT_IN_TOPIC.sub("_", redact_url(text)).strip("_") or "source"


class MqttPublisher:
    """Publishes events from its worker thread; paho's own network thread keeps the connection and
    reconnects. While the broker is unreachable, QoS 1/2 messages wait in paho (``max_inflight_queue``
    at most; a full queue fails the publish, counted by the worker); a QoS 0 message cannot wait and
    fails at once.

    Counts what the broker acknowledged (``acknowledged``), what waits for it (``unacknowledged``) and
    what never will be (``undelivered``: QoS 0 messages a lost connection took along, and at
    :meth:`close` whatever is still unacknowledged). :class:`MqttChannel` reports those as the output's
    delivered and failed events.

    Args:
        config: the ``mqtt`` output settings.
        source_id: the pipeline's source, for the topics.

    Raises:
        SinkError: paho-mqtt is not installed, or the broker address is invalid.
    """

    def __init__(self, config: MqttOutput, source_id: str) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise SinkError("the mqtt output needs paho-mqtt: pip install paho-mqtt") from None
        self._mqtt = mqtt
        self._config = config
        self._broker = f"{config.host}:{config.port}"
        self.base = f"{config.prefix.rstrip('/')}/{topic_part(source_id)}"
        self.availability_topic = f"{self.base}/availability"
        self.latency_ms = Samples(10_000)
        """Publish to the broker's acknowledgement (QoS 1/2) or to the write on its socket (QoS 0), per
        event."""
        # The broker may acknowledge a message before publish() returned its id to us: each id is
        # claimed by whoever comes second, the acknowledgement (_on_publish) or the publisher.
        self._sent: dict[int, float] = {}  # event ids waiting for their acknowledgement: publish time
        self._acked_early: dict[int, tuple[float, bool]] = {}  # id: (acknowledgement time, accepted)
        self._not_events: set[int] = set()  # availability ids whose acknowledgement nobody counts
        self._lock = threading.Lock()
        self.acknowledged = 0
        self.undelivered = 0
        self._outage_since: float | None = None
        self._available = "online"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=config.client_id or "",
            protocol=mqtt.MQTTv311,
        )
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(config.max_inflight_queue)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            client.connect_async(config.host, config.port, keepalive=config.keepalive)
        except (OSError, ValueError) as exc:
            raise SinkError(f"mqtt: cannot use broker {self._broker}: {exc}") from None
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._outage_started(f"the broker refused the connection: {reason_code}", logging.ERROR)
            return
        if self._outage_since is None:
            log.info("mqtt connected to %s", self._broker)
        else:
            log.warning("mqtt %s is back after %.1f s", self._broker, time.monotonic() - self._outage_since)
            self._outage_since = None
        self._publish_availability(self._available)

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        self._outage_started("cannot connect")

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self._config.qos == 0:
            # paho drops the QoS 0 packets it had not written yet: they will never reach the broker.
            with self._lock:
                self.undelivered += len(self._sent)
                self._sent.clear()
        if reason_code.is_failure:
            self._outage_started(f"lost: {reason_code}")

    def _outage_started(self, reason: str, level: int = logging.WARNING) -> None:
        """Logs an outage once, when it starts (paho retries on its own, with a growing delay)."""
        if self._outage_since is not None:
            return
        self._outage_since = time.monotonic()
        log.log(
            level,
            "mqtt %s unreachable (%s): retrying every %d-%d s",
            self._broker,
            reason,
            RECONNECT_MIN_S,
            RECONNECT_MAX_S,
        )

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        now = time.monotonic()
        accepted = not reason_code.is_failure
        with self._lock:
            sent = self._sent.pop(mid, None)
            if sent is not None:
                self._count_ack(sent, now, accepted)
            elif mid in self._not_events:
                self._not_events.discard(mid)
            else:
                self._acked_early[mid] = (now, accepted)

    def _count_ack(self, sent: float, acked: float, accepted: bool) -> None:
        """Counts one event's acknowledgement (under the lock)."""
        if accepted:
            self.acknowledged += 1
            self.latency_ms.add((acked - sent) * 1000.0)
        else:
            self.undelivered += 1

    def handle(self, event: Event) -> None:
        """Publishes ``event``; a source status event also updates the availability topic.

        Raises:
            SinkError: paho refused the message (its queue is full), or it is QoS 0 and the broker is
                not connected.
        """
        payload = json.dumps(event.to_record(), separators=(",", ":"))
        started = time.monotonic()
        # Never hold our lock across publish(): paho may call _on_publish from its network thread
        # while it holds its own locks, which publish() needs too.
        info = self._client.publish(f"{self.base}/{event.type}", payload, qos=self._config.qos)
        if info.rc == self._mqtt.MQTT_ERR_NO_CONN and self._config.qos == 0:
            raise SinkError(f"mqtt: {event.type} not sent: not connected to {self._broker} (QoS 0)")
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            raise SinkError(f"mqtt: cannot publish {event.type}: {self._mqtt.error_string(info.rc)}")
        with self._lock:
            early = self._acked_early.pop(info.mid, None)
            if early is None:
                self._sent[info.mid] = started
            else:
                self._count_ack(started, *early)
        if event.type in ("source_offline", "source_online"):
            self._available = "online" if event.type == "source_online" else "offline"
            self._publish_availability(self._available)

    def _publish_availability(self, state: str) -> Any:
        """Publishes the retained availability; returns paho's message info."""
        info = self._client.publish(self.availability_topic, state, qos=1, retain=True)
        if info.rc in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            with self._lock:
                if self._acked_early.pop(info.mid, None) is None:
                    self._not_events.add(info.mid)
        return info

    def close(self, timeout: float = 3.0) -> None:
        """Publishes ``offline`` on the availability topic, waits up to ``timeout`` s for the broker to
        acknowledge what was published, and disconnects. Events still unacknowledged then count as
        undelivered (and are logged). Safe to call twice."""
        deadline = time.monotonic() + timeout
        info = self._publish_availability("offline")
        while time.monotonic() < deadline and self._client.is_connected():
            with self._lock:
                pending = bool(self._sent)
            if not pending and info.is_published():
                break
            time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            lost = len(self._sent)
            self.undelivered += lost
            self._sent.clear()
        if lost:
            log.warning(
                "mqtt %s: %d events never acknowledged by the broker; counted as failed", self._broker, lost
            )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            unacknowledged = len(self._sent)
            acknowledged, undelivered = self.acknowledged, self.undelivered
        return {
            "connected": self._client.is_connected(),
            "acknowledged": acknowledged,
            "unacknowledged": unacknowledged,
            "undelivered": undelivered,
            "ack_ms": self.latency_ms.percentiles(),
        }


class MqttChannel:
    """The ``mqtt`` output: events queue for a worker thread that hands them to paho (an
    :class:`OutputWorker` around an :class:`MqttPublisher`).

    Its figures count an event as delivered only once the broker acknowledged it; ``backlog`` includes
    the events waiting for their acknowledgement, ``failed`` those refused by paho and, once closed,
    those the broker never acknowledged.

    Args:
        config: the ``mqtt`` output settings.
        source_id: the pipeline's source, for the topics.
        name: its name in the summary and metrics.

    Raises:
        SinkError: paho-mqtt is not installed, or the broker address is invalid.
    """

    def __init__(self, config: MqttOutput, source_id: str, name: str = "mqtt") -> None:
        self.name = name
        self._config = config
        self.publisher = MqttPublisher(config, source_id)
        self._worker: OutputWorker[Event] = OutputWorker(
            name, _Publishing(self.publisher), config.queue_size, drain_timeout=0.0
        )
        self._closed = False

    def submit(self, event: Event) -> None:
        self._worker.submit(event)

    def close(self, deadline: float | None = None) -> None:
        """Publishes what is queued and waits for the broker's acknowledgements, for ``drain_timeout``
        seconds at most and not past ``deadline`` (a ``time.monotonic()`` value) when given; events
        still queued then count as dropped, those unacknowledged as failed. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        own = time.monotonic() + self._config.drain_timeout
        deadline = own if deadline is None else min(own, deadline)
        self._worker.drain(max(0.0, deadline - time.monotonic()))
        self._worker.close()
        self.publisher.close(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        figures = self._worker.stats()
        mqtt = self.publisher.stats()
        return {
            **figures,
            **mqtt,
            "published": figures["delivered"],
            "delivered": mqtt["acknowledged"],
            "failed": figures["failed"] + mqtt["undelivered"],
            "backlog": figures["backlog"] + mqtt["unacknowledged"],
        }


class _Publishing:
    """The worker's handler: publishes; closing the publisher is left to :class:`MqttChannel`, which
    gives it what remains of the shutdown time."""

    def __init__(self, publisher: MqttPublisher) -> None:
        self._publisher = publisher

    def handle(self, event: Event) -> None:
        """Raises:
        SinkError: see :meth:`MqttPublisher.handle`."""
        self._publisher.handle(event)

    def close(self) -> None:
        pass
