"""Events and retained state on an MQTT broker through paho-mqtt (imported only when this output is used).

Topics, under ``<base>`` = ``<prefix>/<source>``:

- ``<base>/<event type>``: each event as JSON (not retained).
- ``<base>/availability`` (retained): ``online`` while the source delivers, ``offline`` when it goes
  offline, when the run ends, and - as the MQTT last will, sent by the broker - when streamvision dies
  without saying goodbye.
- With ``state`` (retained, published when a value changed and held for ``state_frames`` frames):
  ``<base>/<label>/count`` (objects of that label in view), ``<base>/zone/<zone>/count`` (objects in a
  zone of a ``zones`` stage) and ``<base>/line/<line>/in`` / ``out`` (crossings since the run started).
- With ``home_assistant``: a retained discovery config per state topic under
  ``<discovery_prefix>/sensor|binary_sensor/<node>/<object>/config`` (see :class:`HomeAssistant`).

An event counts as delivered once the broker acknowledged it (PUBACK / PUBCOMP for QoS 1 and 2; for
QoS 0, once it was written to a connected socket). At the end of a run, events the broker never
acknowledged count as failed. An unreachable broker is logged at WARNING when the outage starts and when
it ends; a broker whose TLS certificate is not trusted at ERROR, once.
"""

from __future__ import annotations

import json
import logging
import re
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from streamvision import __version__, optional
from streamvision.errors import SinkError
from streamvision.events.config import MqttOutput, MqttTls
from streamvision.events.event import Event
from streamvision.events.geometry import confirmed
from streamvision.events.worker import OutputWorker
from streamvision.frame import Detections, Frame, ZoneCounts
from streamvision.metrics import Samples
from streamvision.redact import redact_url

log = logging.getLogger(__name__)

_NOT_IN_TOPIC = re.compile(r"[#+/\s\x00]+")
_NOT_IN_ID = re.compile(r"[^a-zA-Z0-9-]+")  # runs of underscores too, collapsed into one

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


class Gauge(NamedTuple):
    """One retained state topic: a ``kind`` (``label``, ``zone`` or ``line``), the label, zone or line's
    ``name`` and the ``field`` it holds (``count``; ``in`` or ``out`` for a line).

    Example:
        >>> Gauge("label", "traffic light", "count").topic, Gauge("zone", "drive", "count").topic
        ('traffic_light/count', 'zone/drive/count')
    """

    kind: str
    name: str
    field: str

    @property
    def topic(self) -> str:
        """The topic below ``<prefix>/<source>``."""
        if self.kind == "label":
            return f"{topic_part(self.name)}/{self.field}"
        return f"{self.kind}/{topic_part(self.name)}/{self.field}"


class StateCounter:
    """The state topics' values, from frames: objects per label (tracked boxes a tracker has not
    confirmed yet, id -1, do not count), objects inside each zone and crossings of each line of a
    ``zones`` stage. A new value counts once it held for ``hold_frames`` frames in a row (line totals,
    which only grow, at once). A frame without the detections (a detector that runs every Nth frame)
    changes no label count.

    Args:
        on: result key of the detections counted per label; every detection result when None.
        labels: only these labels, each 0 from the start; every label seen when None.
        hold_frames: frames a new count or occupancy must hold.

    Example:
        >>> counter = StateCounter(None, ("person",), hold_frames=2)
        >>> counter.values
        {Gauge(kind='label', name='person', field='count'): 0}
    """

    def __init__(self, on: str | None, labels: tuple[str, ...] | None, hold_frames: int) -> None:
        self._on = on
        self._labels = labels
        self._hold = hold_frames
        self.values: dict[Gauge, int] = {Gauge("label", label, "count"): 0 for label in labels or ()}
        """The confirmed values, in the order they first appeared."""
        self._pending: dict[Gauge, tuple[int, int]] = {}  # a value that differs: (value, frames in a row)

    def update(self, frame: Frame) -> dict[Gauge, int] | None:
        """Takes ``frame`` in; every confirmed value when one of them changed, else None."""
        changed = False
        for gauge, value in self.observe(frame).items():
            if self.values.get(gauge) == value:
                self._pending.pop(gauge, None)
                continue
            held, frames = self._pending.get(gauge, (value, 0))
            frames = frames + 1 if held == value else 1
            if frames >= (1 if gauge.kind == "line" else self._hold):
                self.values[gauge] = value
                self._pending.pop(gauge, None)
                changed = True
            else:
                self._pending[gauge] = (value, frames)
        return dict(self.values) if changed else None

    def observe(self, frame: Frame) -> dict[Gauge, int]:
        """What ``frame`` shows, before holding: the values it tells anything about."""
        labels: Counter[str] = Counter()
        regions: list[ZoneCounts] = []
        counted = False
        for key, result in frame.results.items():
            if isinstance(result, ZoneCounts):
                regions.append(result)
            elif isinstance(result, Detections) and (self._on is None or key == self._on):
                counted = True
                labels.update(str(name) for name in result.class_name[confirmed(result)])
        seen: dict[Gauge, int] = {}
        if counted:
            known = [g.name for g in (*self.values, *self._pending) if g.kind == "label"]
            for label in dict.fromkeys([*known, *labels]):
                if self._labels is None or label in self._labels:
                    seen[Gauge("label", label, "count")] = labels[label]
        for counts in regions:
            for region in counts.regions:
                if region.kind == "zone":
                    seen[Gauge("zone", region.name, "count")] = sum(region.inside.values())
                else:
                    seen[Gauge("line", region.name, "in")] = sum(region.entered.values())
                    seen[Gauge("line", region.name, "out")] = sum(region.exited.values())
        return seen


class HomeAssistant:
    """Home Assistant MQTT discovery for the state topics of one source: one device, ``streamvision
    <source>``, with a ``sensor`` per count (``<label> count``, ``zone <zone> count``, ``line <line>
    in`` / ``out``) and an occupancy ``binary_sensor`` per label and zone (on while its count is above
    0), all unavailable while ``<base>/availability`` says ``offline``.

    Args:
        base: ``<prefix>/<source>``.
        source_id: the source, for the device's name.
        discovery_prefix: Home Assistant's discovery prefix.

    Example:
        >>> ha = HomeAssistant("streamvision/door", "door", "homeassistant")
        >>> for topic, _ in ha.configs(Gauge("label", "person", "count")):
        ...     print(topic)
        homeassistant/sensor/streamvision_door/person_count/config
        homeassistant/binary_sensor/streamvision_door/person_occupancy/config
    """

    def __init__(self, base: str, source_id: str, discovery_prefix: str) -> None:
        self.base = base
        self.node = _NOT_IN_ID.sub("_", base).strip("_")
        self.prefix = discovery_prefix.rstrip("/")
        self.status_topic = f"{self.prefix}/status"
        """Where Home Assistant says ``online`` when it starts (its birth message)."""
        self.device = {
            "identifiers": [self.node],
            "name": f"streamvision {redact_url(source_id)}",
            "manufacturer": "streamvision",
            "model": "video analytics pipeline",
            "sw_version": __version__,
        }

    def configs(self, gauge: Gauge) -> list[tuple[str, str]]:
        """The retained discovery messages (topic, JSON) of the entities that read ``gauge``."""
        state_topic = f"{self.base}/{gauge.topic}"
        title = gauge.name if gauge.kind == "label" else f"{gauge.kind} {gauge.name}"
        object_id = _NOT_IN_ID.sub("_", title).strip("_")
        sensor: dict[str, Any] = {
            "name": f"{title} {gauge.field}",
            "state_class": "total_increasing" if gauge.kind == "line" else "measurement",
            "icon": "mdi:counter",
        }
        found = [("sensor", f"{object_id}_{gauge.field}", sensor)]
        if gauge.field == "count":
            occupancy = {
                "name": f"{title} occupancy",
                "device_class": "occupancy",
                "value_template": "{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
            }
            found.append(("binary_sensor", f"{object_id}_occupancy", occupancy))
        return [
            (
                f"{self.prefix}/{component}/{self.node}/{object_id}/config",
                json.dumps(
                    {
                        **entity,
                        "unique_id": f"{self.node}_{object_id}",
                        "state_topic": state_topic,
                        "availability_topic": f"{self.base}/availability",
                        "payload_available": "online",
                        "payload_not_available": "offline",
                        "device": self.device,
                        "origin": {"name": "streamvision", "sw_version": __version__},
                    },
                    separators=(",", ":"),
                ),
            )
            for component, object_id, entity in found
        ]


def tls_context(tls: MqttTls) -> ssl.SSLContext:
    """The client TLS context of ``tls``: the broker's certificate must chain to ``ca`` (the system's
    CAs when None) and, unless ``insecure``, name the host; ``cert`` and ``key`` identify the client.

    Raises:
        SinkError: a file cannot be read or holds no usable certificate or key (the setting is named).
    """
    for setting, path in (("ca", tls.ca), ("cert", tls.cert), ("key", tls.key)):
        if path is not None and not Path(path).is_file():
            raise SinkError(f"mqtt: tls.{setting}: {path} is not a readable file")
    # as paho's tls_set() makes it: the certificate and the host name it names are checked
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        if tls.ca is None:
            context.load_default_certs()
        else:
            context.load_verify_locations(cafile=tls.ca)
    except (OSError, ValueError) as exc:
        raise SinkError(f"mqtt: tls.ca: {tls.ca} holds no usable CA certificate ({exc})") from None
    if tls.cert is not None:
        try:
            context.load_cert_chain(tls.cert, tls.key)
        except (OSError, ValueError) as exc:
            raise SinkError(
                f"mqtt: tls.cert / tls.key: {tls.cert} and {tls.key or 'its key'} are no matching "
                f"certificate and key ({exc})"
            ) from None
    if tls.insecure:
        context.check_hostname = False
    return context


class MqttPublisher:
    """Publishes events from its worker thread; paho's own network thread keeps the connection and
    reconnects. While the broker is unreachable, QoS 1/2 messages wait in paho (``max_inflight_queue``
    at most; a full queue fails the publish, counted by the worker); a QoS 0 message cannot wait and
    fails at once.

    Counts what the broker acknowledged (``acknowledged``), what waits for it (``unacknowledged``) and
    what never will be (``undelivered``: QoS 0 messages a lost connection took along, and at
    :meth:`close` whatever is still unacknowledged). :class:`MqttChannel` reports those as the output's
    delivered and failed events.

    With ``state`` (or ``home_assistant``), :meth:`offer_state` hands it the latest state values; a
    thread of its own publishes them (retained, QoS 1), with their Home Assistant discovery configs
    first, and everything again after each (re)connection and each Home Assistant birth message.

    Args:
        config: the ``mqtt`` output settings.
        source_id: the pipeline's source, for the topics.

    Raises:
        SinkError: paho-mqtt is not installed, the broker address is invalid, or a TLS file cannot be
            used.
    """

    def __init__(self, config: MqttOutput, source_id: str) -> None:
        mqtt = optional.require("paho.mqtt.client", "the mqtt output", "pip install paho-mqtt", SinkError)
        from paho.mqtt.enums import CallbackAPIVersion

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
        self._not_events: set[int] = set()  # availability and state ids whose acknowledgement nobody counts
        self._lock = threading.Lock()
        self.acknowledged = 0
        self.undelivered = 0
        self._outage_since: float | None = None
        self._available = "online"
        self.home_assistant = (
            HomeAssistant(self.base, source_id, config.discovery_prefix) if config.home_assistant else None
        )
        context = None if config.tls is None else tls_context(config.tls)
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=config.client_id or "",
            protocol=mqtt.MQTTv311,
        )
        if context is not None:
            client.tls_set_context(context)
        if config.username is not None:
            client.username_pw_set(config.username, config.password)
        client.will_set(self.availability_topic, "offline", qos=1, retain=True)
        client.max_queued_messages_set(config.max_inflight_queue)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=RECONNECT_MAX_S)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_log = self._on_log
        self._paho_error: str | None = None  # paho's latest error line: why a connection was lost
        self._client = client
        self.state = _RetainedState(self, topic_part(source_id)) if config.publishes_state else None
        try:
            client.connect_async(config.host, config.port, keepalive=config.keepalive)
        except (OSError, ValueError) as exc:
            if self.state is not None:
                self.state.close(0.0)
            raise SinkError(f"mqtt: cannot use broker {self._broker}: {exc}") from None
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._outage_started(f"the broker refused the connection: {reason_code}", logging.ERROR)
            return
        self._paho_error = None
        if self._outage_since is None:
            log.info("mqtt connected to %s", self._broker)
        else:
            log.warning("mqtt %s is back after %.1f s", self._broker, time.monotonic() - self._outage_since)
            self._outage_since = None
        self._publish_availability(self._available)
        if self.home_assistant is not None:
            client.subscribe(self.home_assistant.status_topic, qos=1)
        if self.state is not None:
            # the broker may have lost its retained messages (restarted without persistence)
            self.state.resend()

    def _on_connect_fail(self, client: Any, userdata: Any) -> None:
        # paho calls this from the except block of its failed attempt: that exception says why
        self._outage_started(*_failure(sys.exc_info()[1]))

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        ha = self.home_assistant
        if ha is None or self.state is None or message.topic != ha.status_topic:
            return
        if message.payload == b"online":  # Home Assistant (re)started: it wants configs and values again
            self.state.resend()

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if self._config.qos == 0:
            # paho drops the QoS 0 packets it had not written yet: they will never reach the broker.
            with self._lock:
                self.undelivered += len(self._sent)
                self._sent.clear()
        if reason_code.is_failure:
            why = self._paho_error
            if why is not None and "[SSL" in why:  # the broker's TLS refused us: retrying will not mend it
                self._outage_started(f"lost: {why}; check tls.cert and tls.key", logging.ERROR)
            else:
                self._outage_started(f"lost: {reason_code}" + ("" if why is None else f" ({why})"))

    def _on_log(self, client: Any, userdata: Any, level: int, text: str) -> None:
        if level == self._mqtt.MQTT_LOG_ERR:
            self._paho_error = text

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

    def offer_state(self, values: Mapping[Gauge, int]) -> None:
        """Hands over every state value (see :class:`StateCounter`) and returns at once; the state
        thread publishes what changed, the latest values only when they come faster than it
        publishes. Does nothing without ``state``."""
        if self.state is not None:
            self.state.offer(values)

    @property
    def connected(self) -> bool:
        return bool(self._client.is_connected())

    def publish_retained(self, topic: str, payload: str) -> Any:
        """Publishes a retained message at QoS 1 whose acknowledgement counts for no event; returns
        paho's message info, None when paho refused it (its queue is full)."""
        info = self._client.publish(topic, payload, qos=1, retain=True)
        if info.rc not in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN):
            return None
        with self._lock:
            if self._acked_early.pop(info.mid, None) is None:
                self._not_events.add(info.mid)
        return info

    def _publish_availability(self, state: str) -> Any:
        """Publishes the retained availability; returns paho's message info (None: refused)."""
        return self.publish_retained(self.availability_topic, state)

    def close(self, timeout: float = 3.0) -> None:
        """Publishes the state values still waiting, then ``offline`` on the availability topic, waits
        up to ``timeout`` s for the broker to acknowledge what was published, and disconnects. Events
        still unacknowledged then count as undelivered (and are logged). The discovery configs and
        state values stay retained. Safe to call twice."""
        deadline = time.monotonic() + timeout
        if self.state is not None:
            self.state.close(timeout)
        info = self._publish_availability("offline")
        while time.monotonic() < deadline and self._client.is_connected():
            with self._lock:
                pending = bool(self._sent or self._not_events)
            if not pending and (info is None or info.is_published()):
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
        figures = {
            "connected": self._client.is_connected(),
            "acknowledged": acknowledged,
            "unacknowledged": unacknowledged,
            "undelivered": undelivered,
            "ack_ms": self.latency_ms.percentiles(),
        }
        if self.state is not None:
            figures.update(self.state.stats())
        return figures


def _failure(exc: BaseException | None) -> tuple[str, int]:
    """Why a connection attempt failed, and the log level: ERROR for what retrying will not mend."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = (exc.verify_message or exc.reason or str(exc)).rstrip(".")
        return f"TLS: the broker's certificate is not trusted: {why}; check tls.ca and host", logging.ERROR
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}", logging.ERROR
    if exc is None:
        return "cannot connect", logging.WARNING
    return f"cannot connect: {exc.strerror or exc}" if isinstance(exc, OSError) else str(exc), logging.WARNING


class _RetainedState:
    """The state topics' own thread: publishes the latest values it was offered (a mailbox, not a
    queue: a value superseded before it was published is never sent), each topic when its value
    differs from what it last published, and everything on :meth:`resend` (each connection). While
    the broker is away it publishes nothing: paho's queue does not fill with values that are stale
    by the time it is back. A Home Assistant config goes out before the first value of its topic.
    """

    def __init__(self, publisher: MqttPublisher, name: str) -> None:
        self._publisher = publisher
        self._cond = threading.Condition()
        self._wanted: dict[Gauge, int] | None = None
        self._resend = False
        self._stopping = False
        self._busy = False
        self._values: dict[Gauge, int] = {}
        self._sent: dict[str, str] = {}  # topic: the payload last published
        self._announced: set[Gauge] = set()
        self.published = 0
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name=f"sv-mqtt-state-{name}", daemon=True)
        self._thread.start()

    def offer(self, values: Mapping[Gauge, int]) -> None:
        with self._cond:
            self._wanted = dict(values)
            self._cond.notify_all()

    def resend(self) -> None:
        """Everything known is published again (and announced again to Home Assistant)."""
        with self._cond:
            self._resend = True
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._wanted is not None or self._resend or self._stopping)
                if self._wanted is None and not self._resend:
                    return
                wanted, self._wanted = self._wanted, None
                everything, self._resend = self._resend, False
                self._busy = True
            try:
                if wanted is not None:
                    self._values = wanted
                self._publish(everything)
            except Exception as exc:  # a bug here must not end the state topics for the run
                log.error("mqtt state topics: %s", exc)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _publish(self, everything: bool) -> None:
        publisher = self._publisher
        if not publisher.connected:
            return  # kept: the next connection sends everything, the latest values only
        ha = publisher.home_assistant
        for gauge, value in self._values.items():
            if ha is not None and (everything or gauge not in self._announced):
                sent = [publisher.publish_retained(topic, config) for topic, config in ha.configs(gauge)]
                if all(info is not None for info in sent):
                    self._announced.add(gauge)
            topic, payload = f"{publisher.base}/{gauge.topic}", str(value)
            if not everything and self._sent.get(topic) == payload:
                continue
            if publisher.publish_retained(topic, payload) is None:
                self.failed += 1  # tried again with the next change or (re)connection
            else:
                self._sent[topic] = payload
                self.published += 1

    def close(self, timeout: float) -> None:
        """Publishes what waits, for up to ``timeout`` s, and stops the thread."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._cond.wait_for(
                lambda: self._wanted is None and not self._resend and not self._busy, max(0.0, timeout)
            )
            self._wanted, self._resend, self._stopping = None, False, True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()) + 1.0)

    def stats(self) -> dict[str, int]:
        return {"state_published": self.published, "state_failed": self.failed}


class MqttChannel:
    """The ``mqtt`` output: events queue for a worker thread that hands them to paho (an
    :class:`OutputWorker` around an :class:`MqttPublisher`); with ``state``, :meth:`observe` takes each
    frame's counts for the retained state topics.

    Its figures count an event as delivered only once the broker acknowledged it; ``backlog`` includes
    the events waiting for their acknowledgement, ``failed`` those refused by paho and, once closed,
    those the broker never acknowledged. State messages are counted apart (``state_published``,
    ``state_failed``).

    Args:
        config: the ``mqtt`` output settings.
        source_id: the pipeline's source, for the topics.
        name: its name in the summary and metrics.

    Raises:
        SinkError: paho-mqtt is not installed, the broker address is invalid, or a TLS file cannot be
            used.
    """

    def __init__(self, config: MqttOutput, source_id: str, name: str = "mqtt") -> None:
        self.name = name
        self._config = config
        self.publisher = MqttPublisher(config, source_id)
        self._worker: OutputWorker[Event] = OutputWorker(
            name, _Publishing(self.publisher), config.queue_size, drain_timeout=0.0
        )
        self._counter = (
            StateCounter(config.state_on, config.state_labels, config.state_frames)
            if config.publishes_state
            else None
        )
        if self._counter is not None and self._counter.values:
            self.publisher.offer_state(self._counter.values)  # the labels asked for, at 0
        self._closed = False

    def submit(self, event: Event) -> None:
        self._worker.submit(event)

    def observe(self, frame: Frame) -> None:
        """Takes ``frame``'s counts for the state topics and returns at once (the publisher's state
        thread publishes); for every frame, on the pipeline's thread. Does nothing without ``state``."""
        if self._counter is None or self._closed:
            return
        values = self._counter.update(frame)
        if values is not None:
            self.publisher.offer_state(values)

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
