"""Event outputs when the network misbehaves, against real components: a webhook receiver on loopback
that is down, broken, silent or not HTTP at all, a closed MQTT port and a real mosquitto."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from streamvision.config import parse_config
from streamvision.errors import ConfigError
from streamvision.events import Event
from streamvision.events.config import MqttOutput, WebhookOutput
from streamvision.events.outputs.mqtt import MqttChannel
from streamvision.events.outputs.spool import Spool
from streamvision.events.outputs.webhook import WebhookChannel
from tests.event_servers import (  # noqa: F401 - fixtures
    RawServer,
    Receiver,
    Subscriber,
    free_port,
    garbage_server,
    mosquitto,
    needs_mosquitto,
    receiver,
    silent_server,
    wait_for,
)

WEBHOOK_LOG = "streamvision.events.outputs.webhook"
MQTT_LOG = "streamvision.events.outputs.mqtt"


def make_events(n: int, source: str = "door") -> list[Event]:
    return [
        Event("object_appeared", source, "2026-01-01T00:00:00.000Z", "appear", frame=i, class_name="person")
        for i in range(n)
    ]


def webhook_config(url: str, spool: Path, **settings: Any) -> WebhookOutput:
    fast = {"backoff_initial": 0.05, "backoff_max": 0.2, "drain_timeout": 0.0, "timeout": 2}
    return WebhookOutput(url=url, spool=spool, **{**fast, **settings})


def messages(caplog: pytest.LogCaptureFixture, logger: str, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and r.levelno >= level]


def webhook_raw(url: str) -> dict[str, Any]:
    return {"source": "a.mp4", "events": {"outputs": [{"type": "webhook", "url": url, "spool": "s"}]}}


# 1. The URL is checked at config load; no sender failure goes unseen.


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("127.0.0.1:8000/hook", "must start with http:// or https://"),
        ("ftp://alice:S3cret@host/x", "must start with http:// or https://"),
        ("http:///hook", "has no valid host"),
        ("http://exa mple.com/hook", "has no valid host"),
        ("http://[::1/hook", "invalid URL"),
        ("http://host:99999/hook", "port 99999 is not in 1-65535"),
    ],
)
def test_a_bad_webhook_url_is_a_config_error(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(webhook_raw(url))
    message = str(excinfo.value)
    assert message.startswith("config: events.outputs.0.webhook.url: ") and problem in message
    assert "\n" not in message and "S3cret" not in message


def test_good_webhook_urls_and_bad_headers_at_config_load() -> None:
    for url in ("http://127.0.0.1:8000/hook", "https://u:p@hooks.example.com/x?token=abc"):
        parse_config(webhook_raw(url))
    raw = webhook_raw("http://127.0.0.1:8000/hook")
    raw["events"]["outputs"][0]["headers"] = {"X-Token": "a\nb"}
    with pytest.raises(ConfigError, match=r"headers: header 'X-Token': the value must be printable ASCII"):
        parse_config(raw)


def test_a_failure_that_is_no_network_error_is_counted_and_the_sender_goes_on(tmp_path: Path) -> None:
    # A URL httpx cannot use (it raises InvalidURL, no HTTPError) that got past the config check.
    config = webhook_config("http://127.0.0.1:9/hook", tmp_path / "spool").model_copy(
        update={"url": "http://[::1/hook"}
    )
    channel = WebhookChannel(config)
    try:
        for event in make_events(3):
            channel.submit(event)
        assert wait_for(lambda: channel.stats()["failed"] == 3, 10)
        for event in make_events(2):  # the sender is still there
            channel.submit(event)
        assert wait_for(lambda: channel.stats()["failed"] == 5, 10)
    finally:
        channel.close()
    stats = channel.stats()
    assert stats["delivered"] == 0 and stats["backlog"] == 0 and stats["retries"] == 0
    assert "InvalidURL" in stats["last_error"]
    assert len(list((tmp_path / "spool" / "failed").glob("*.json"))) == 5


# 1 and 5. An outage is said when it starts and when it ends, with its retry schedule, not per retry.


@pytest.mark.parametrize("failure", ["closed port", "HTTP 500"])
def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    failure: str,
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=WEBHOOK_LOG)
    if failure == "HTTP 500":
        receiver.fail_with = 500
        receiver.start()
    channel = WebhookChannel(webhook_config(receiver.url, tmp_path / "spool", drain_timeout=20))
    events = make_events(3)
    try:
        for event in events:
            channel.submit(event)
        assert wait_for(lambda: channel.retries >= 6)
        warnings = messages(caplog, WEBHOOK_LOG, logging.WARNING)
        assert len(warnings) == 1, warnings
        reason = "ConnectError" if failure == "closed port" else "HTTP 500"
        assert "unreachable" in warnings[0] and reason in warnings[0]
        assert "retrying every 0.05-0.2 s" in warnings[0]
        assert channel.stats()["unreachable_s"] > 0
        if failure == "HTTP 500":
            receiver.fail_with = None
        else:
            receiver.start()
        assert wait_for(lambda: channel.delivered == 3)
    finally:
        channel.close()
    warnings = messages(caplog, WEBHOOK_LOG, logging.WARNING)
    assert len(warnings) == 2 and "is back after" in warnings[1], warnings
    assert [body["id"] for body in receiver.received()] == [e.id for e in events]
    assert channel.stats()["unreachable_s"] == 0


def test_an_answer_that_is_not_http_is_an_outage_said_once(
    garbage_server: RawServer,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=WEBHOOK_LOG)
    channel = WebhookChannel(webhook_config(garbage_server.url, tmp_path / "spool"))
    try:
        channel.submit(make_events(1)[0])
        assert wait_for(lambda: channel.retries >= 4)
    finally:
        channel.close()
    warnings = messages(caplog, WEBHOOK_LOG, logging.WARNING)
    assert "unreachable (RemoteProtocolError" in warnings[0], warnings
    assert sum("unreachable" in text for text in warnings) == 1, warnings
    assert "left in" in warnings[-1]  # the event waits in the spool for the next run
    assert channel.stats()["backlog"] == 1 and channel.stats()["failed"] == 0


# 5. give_up_after ends the retries: the rest counts as failed, one ERROR says so.


def test_give_up_after_an_outage_counts_the_rest_as_failed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=WEBHOOK_LOG)
    url = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens there
    channel = WebhookChannel(webhook_config(url, tmp_path / "spool", give_up_after=0.5))
    try:
        for event in make_events(4):
            channel.submit(event)
        assert wait_for(lambda: channel.stats()["gave_up"], 15)
        retries = channel.retries
        for event in make_events(2):  # after giving up: counted as failed, not spooled
            channel.submit(event)
    finally:
        channel.close()
    stats = channel.stats()
    assert stats["failed"] == 6 and stats["delivered"] == 0 and stats["backlog"] == 0
    assert stats["retries"] == retries >= 2
    assert len(list((tmp_path / "spool" / "failed").glob("*.json"))) == 4
    errors = messages(caplog, WEBHOOK_LOG, logging.ERROR)
    assert len(errors) == 1 and "gave up" in errors[0] and "4 waiting events" in errors[0], errors
    warnings = messages(caplog, WEBHOOK_LOG, logging.WARNING)
    assert "giving up after 0.5 s" in warnings[0]


def test_give_up_after_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WebhookOutput(url="http://127.0.0.1:9/", spool=Path("s"), give_up_after=0)


# 3. Closing never waits for the request timeout.


@pytest.mark.parametrize(("drain_timeout", "shared_deadline"), [(1.0, None), (600.0, 1.0)])
def test_close_keeps_its_deadline_while_the_receiver_never_answers(
    drain_timeout: float,
    shared_deadline: float | None,
    silent_server: RawServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    config = webhook_config(silent_server.url, tmp_path / "spool", timeout=60, drain_timeout=drain_timeout)
    channel = WebhookChannel(config)
    for event in make_events(2):
        channel.submit(event)
    assert wait_for(lambda: silent_server.connections >= 1)  # a request waits for its answer
    started = time.monotonic()
    if shared_deadline is None:
        channel.close()
    else:
        channel.close(started + shared_deadline)
    assert time.monotonic() - started < 10  # the deadline is 1 s; the request timeout 60 s
    stats = channel.stats()
    assert stats["delivered"] == 0 and stats["backlog"] == 2
    left = Spool(tmp_path / "spool", 100)  # released, with both events for the next run
    try:
        assert len(left) == 2
    finally:
        left.close()


# 4. No credential of the webhook in httpx's and httpcore's logs.


def test_http_library_logs_never_show_webhook_credentials(
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="httpx")
    caplog.set_level(logging.DEBUG, logger="httpcore")
    receiver.start()
    url = f"http://alice:Pa55word@127.0.0.1:{receiver.port}/hook?token=QueryT0ken"
    headers = {"Authorization": "Bearer HeaderT0ken", "X-Api-Key": "ApiK3yValue"}
    channel = WebhookChannel(webhook_config(url, tmp_path / "spool", headers=headers))
    try:
        channel.submit(make_events(1)[0])
        assert wait_for(lambda: channel.delivered == 1)
    finally:
        channel.close()
    # httpcore names headers at DEBUG as pairs of bytes (here those of an answer that echoes them)
    pairs = [(b"Authorization", b"Bearer HeaderT0ken"), (b"Set-Cookie", b"session=C00kie"), (b"X", b"1")]
    logging.getLogger("httpcore.http11").debug("receive_response_headers.complete return_value=%r", pairs)
    http_records = [r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpcore")]
    assert any("127.0.0.1" in r.getMessage() for r in http_records if r.name == "httpx")
    assert any(r.name == "httpcore.http11" for r in http_records)
    text = "\n".join(r.getMessage() for r in caplog.records) + caplog.text
    for secret in ("Pa55word", "QueryT0ken", "HeaderT0ken", "ApiK3yValue", "C00kie"):
        assert secret not in text
    assert "(b'X', b'1')" in text  # the rest is left as it was


# 2. MQTT: delivered means acknowledged by the broker.


@pytest.mark.parametrize("qos", [0, 1])
def test_mqtt_with_no_broker_reports_every_event_as_failed(
    qos: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=MQTT_LOG)
    config = MqttOutput(port=free_port(), qos=qos, drain_timeout=0.5)  # a closed loopback port
    channel = MqttChannel(config, "cam")
    try:
        for event in make_events(5):
            channel.submit(event)
        assert wait_for(lambda: channel.stats()["backlog"] == (0 if qos == 0 else 5))
        running = channel.stats()
        assert running["delivered"] == 0 and running["failed"] == (5 if qos == 0 else 0)
        assert wait_for(lambda: messages(caplog, MQTT_LOG, logging.WARNING))
    finally:
        channel.close()
    stats = channel.stats()
    assert stats["delivered"] == 0 and stats["failed"] == 5 and stats["backlog"] == 0
    assert stats["unacknowledged"] == 0
    warnings = messages(caplog, MQTT_LOG, logging.WARNING)
    assert "unreachable" in warnings[0] and "retrying every 1-30 s" in warnings[0]
    assert "(cannot connect: Connection refused)" in warnings[0]  # why, from paho's failed attempt
    assert sum("unreachable" in text for text in warnings) == 1, warnings
    if qos:
        assert "5 events never acknowledged" in warnings[-1]


@needs_mosquitto
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mqtt_counts_what_the_broker_acknowledged(qos: int, mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto)
    channel = MqttChannel(MqttOutput(port=mosquitto, qos=qos), "cam")
    events = make_events(20, source="cam")
    try:
        assert wait_for(lambda: channel.stats()["connected"])
        for event in events:
            channel.submit(event)
        assert wait_for(lambda: channel.stats()["delivered"] == 20)
    finally:
        channel.close()
    stats = channel.stats()
    assert stats["failed"] == 0 and stats["backlog"] == 0 and stats["published"] == 20
    assert wait_for(lambda: len(subscriber.events()) == 20)
    assert [event["id"] for _, event, _ in subscriber.events()] == [e.id for e in events]
    subscriber.close()
