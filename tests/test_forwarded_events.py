"""The fleet actor's buffer of events for the driver: bounded, drops counted and reported."""

from __future__ import annotations

import logging
import threading

import pytest

from streamvision.cluster.actor import FORWARD_LIMIT, ForwardedEvents
from streamvision.events.event import Event


def event(frame: int) -> Event:
    return Event("object_appeared", "door", "2026-01-01T00:00:00.000Z", "faces", frame=frame)


def test_a_driver_that_stops_polling_loses_the_oldest_events(caplog: pytest.LogCaptureFixture) -> None:
    forward = ForwardedEvents(limit=5)
    with caplog.at_level(logging.WARNING, logger="streamvision.cluster.actor"):
        for frame in range(12):
            forward.submit(event(frame))
    assert forward.stats() == {"submitted": 12, "dropped": 7, "backlog": 5}
    assert [record["frame"] for record in forward.take()] == [7, 8, 9, 10, 11]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "door" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="streamvision.cluster.actor"):
        for frame in range(12, 20):
            forward.submit(event(frame))
    assert forward.stats() == {"submitted": 20, "dropped": 10, "backlog": 5}
    assert not caplog.records  # warned once, at the first drop


def test_the_default_keeps_ten_thousand_events() -> None:
    forward = ForwardedEvents()
    assert forward.limit == FORWARD_LIMIT == 10_000
    for frame in range(FORWARD_LIMIT + 1):
        forward.submit(event(frame))
    assert forward.stats()["dropped"] == 1 and forward.stats()["backlog"] == FORWARD_LIMIT
    assert forward.take()[0]["frame"] == 1


def test_every_event_is_either_taken_or_counted_as_dropped_while_submit_and_take_race() -> None:
    forward = ForwardedEvents(limit=50)
    taken: list[int] = []
    done = threading.Event()

    def submit() -> None:
        for frame in range(20_000):
            forward.submit(event(frame))
        done.set()

    submitter = threading.Thread(target=submit, name="test-submit")
    submitter.start()
    while not done.is_set():
        taken.extend(record["frame"] for record in forward.take())
    submitter.join()
    taken.extend(record["frame"] for record in forward.take())
    assert len(taken) + forward.dropped == forward.submitted == 20_000
    assert taken == sorted(taken) and len(set(taken)) == len(taken)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="limit"):
        ForwardedEvents(limit=0)
