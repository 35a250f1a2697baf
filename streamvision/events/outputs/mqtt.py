"""Events on an MQTT broker through paho-mqtt (imported only when this output is used).

Topics: ``<prefix>/<source>/<event type>`` for events (not retained) and ``<prefix>/<source>/availability``
(retained): ``online`` while the source delivers, ``offline`` when it goes offline, when the run ends,
and - as the MQTT last will, sent by the broker - when streamvision dies without saying goodbye.
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
from streamvision.metrics import Samples
from streamvision.redact import redact_url

log = logging.getLogger(__name__)

_NOT_IN_TOPIC = re.compile(r"[#+/\s\x00]+")


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
    at most; a full queue fails the publish, counted by the worker).

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
        self.base = f"{config.prefix.rstrip('/')}/{topic_part(source_id)}"
        self.availability_topic = f"{self.base}/availability"
        self.latency_ms = Samples(10_000)
        """Publish to broker acknowledgement (QoS 1/2), per event."""
        self._sent: dict[int, float] = {}
        self._acked_early: set[int] = set()
        self._lock = threading.Lock()
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
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        self._client = client
        try:
            client.connect_async(config.host, config.port, keepalive=config.keepalive)
        except (OSError, ValueError) as exc:
            raise SinkError(f"mqtt: cannot use broker {config.host}:{config.port}: {exc}") from None
        client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            log.error(
                "mqtt %s:%d refused the connection: %s", self._config.host, self._config.port, reason_code
            )
            return
        log.info("mqtt connected to %s:%d", self._config.host, self._config.port)
        client.publish(self.availability_topic, self._available, qos=1, retain=True)

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            log.warning("mqtt lost the broker (%s); reconnecting", reason_code)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            sent = self._sent.pop(mid, None)
            if sent is None:
                if len(self._acked_early) > 256:  # acks of availability messages are never claimed
                    self._acked_early.clear()
                self._acked_early.add(mid)
            else:
                self.latency_ms.add((time.monotonic() - sent) * 1000.0)

    def handle(self, event: Event) -> None:
        """Publishes ``event``; a source status event also updates the availability topic.

        Raises:
            SinkError: paho refused the message (its queue is full).
        """
        payload = json.dumps(event.to_record(), separators=(",", ":"))
        started = time.monotonic()
        # Never hold our lock across publish(): paho may call _on_publish from its network thread
        # while it holds its own locks, which publish() needs too.
        info = self._client.publish(f"{self.base}/{event.type}", payload, qos=self._config.qos)
        ok = info.rc in (self._mqtt.MQTT_ERR_SUCCESS, self._mqtt.MQTT_ERR_NO_CONN)
        if ok and self._config.qos > 0:
            with self._lock:
                if info.mid in self._acked_early:  # the acknowledgement beat us here
                    self._acked_early.discard(info.mid)
                    self.latency_ms.add((time.monotonic() - started) * 1000.0)
                else:
                    self._sent[info.mid] = started
        if not ok:
            raise SinkError(f"mqtt: cannot publish {event.type}: {self._mqtt.error_string(info.rc)}")
        if event.type in ("source_offline", "source_online"):
            self._available = "online" if event.type == "source_online" else "offline"
            self._client.publish(self.availability_topic, self._available, qos=1, retain=True)

    def close(self, timeout: float = 3.0) -> None:
        """Publishes ``offline`` on the availability topic, waits up to ``timeout`` s for queued messages
        to reach the broker, and disconnects."""
        deadline = time.monotonic() + timeout
        info = self._client.publish(self.availability_topic, "offline", qos=1, retain=True)
        while time.monotonic() < deadline and self._client.is_connected():
            with self._lock:
                pending = bool(self._sent)
            if not pending and info.is_published():
                break
            time.sleep(0.02)
        self._client.disconnect()
        self._client.loop_stop()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            unacknowledged = len(self._sent)
        return {
            "connected": self._client.is_connected(),
            "unacknowledged": unacknowledged,
            "ack_ms": self.latency_ms.percentiles(),
        }
