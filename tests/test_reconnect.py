"""The reconnect policy's arithmetic, URL redaction and the network-source config."""

from __future__ import annotations

import random

import pytest

from streamvision.backoff import Backoff
from streamvision.config import parse_config
from streamvision.errors import ConfigError
from streamvision.redact import redact_url
from streamvision.sources import default_source_id


def test_backoff_doubles_up_to_the_cap() -> None:
    waits = Backoff(0.5, 8.0, jitter=0.0)
    assert [waits.delay(n) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert waits.delay(10_000) == 8.0


def test_jitter_only_shortens_and_spreads_the_waits() -> None:
    waits = Backoff(1.0, 30.0, jitter=0.5, rng=random.Random(7))
    delays = [waits.delay(3) for _ in range(200)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert max(delays) - min(delays) > 2.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rtsp://admin:pw@10.0.0.7:554/live", "rtsp://***@10.0.0.7:554/live"),
        ("rtsps://admin@cam/h264", "rtsps://***@cam/h264"),
        ("rtsp://u:p@ss@w0rd@cam/x", "rtsp://***@cam/x"),
        ("http://u:p@cam/mjpg?a=b@c", "http://***@cam/mjpg?a=b@c"),
        ("error: 'rtsp://u:p@h/s' and 'http://v:q@g/t'", "error: 'rtsp://***@h/s' and 'http://***@g/t'"),
        ("rtsp://cam/path@odd", "rtsp://cam/path@odd"),
        ("/videos/a@b.mp4", "/videos/a@b.mp4"),
    ],
)
def test_redact_url_hides_every_userinfo(text: str, expected: str) -> None:
    assert redact_url(text) == expected


def test_source_ids_never_hold_credentials() -> None:
    assert default_source_id("rtsp://u:p@ss@cam:554/live/") == "cam:554/live"
    assert default_source_id("http://cam/a@b") == "cam/a@b"


def test_network_options_are_validated() -> None:
    config = parse_config({"source": {"uri": "rtsp://cam/live", "transport": "udp", "reconnect": {"max": 5}}})
    assert config.source.transport == "udp" and config.source.reconnect.max == 5
    assert config.source.reconnect.max_retries is None
    for bad, message in [
        ({"transport": "http"}, "source.transport"),
        ({"stall_timeout": 0}, "source.stall_timeout"),
        ({"reconnect": {"initial": 5, "max": 1}}, "must be >= initial"),
        ({"reconnect": {"jitter": 2}}, "source.reconnect.jitter"),
        ({"reconnect": {"max_retries": -1}}, "source.reconnect.max_retries"),
        ({"reconnect": {"retries": 1}}, "source.reconnect.retries: unknown key"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_config({"source": {"uri": "rtsp://cam/live", **bad}})
