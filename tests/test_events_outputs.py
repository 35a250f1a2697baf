"""Event outputs against real components: a webhook receiver on loopback that is down for a while, a
mosquitto broker, a stuck output that must not block its caller."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from streamvision.errors import SinkError
from streamvision.events import Event
from streamvision.events.config import MqttOutput, WebhookOutput
from streamvision.events.outputs.mqtt import MqttPublisher
from streamvision.events.outputs.spool import Spool
from streamvision.events.outputs.webhook import WebhookChannel
from streamvision.events.worker import OutputWorker
from tests.event_servers import (  # noqa: F401 - fixtures
    Receiver,
    Subscriber,
    mosquitto,
    needs_mosquitto,
    receiver,
    wait_for,
)


def make_events(n: int, source: str = "door") -> list[Event]:
    return [
        Event("object_appeared", source, "2026-01-01T00:00:00.000Z", "appear", frame=i, class_name="person")
        for i in range(n)
    ]


def webhook(url: str, spool: Path, drain: float = 20.0) -> WebhookChannel:
    config = WebhookOutput(
        url=url, spool=spool, backoff_initial=0.05, backoff_max=0.2, drain_timeout=drain, timeout=2
    )
    return WebhookChannel(config)


def test_webhook_spools_while_the_receiver_is_down_then_delivers_in_order(
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    channel = webhook(receiver.url, tmp_path / "spool")
    events = make_events(25)
    try:
        for event in events[:15]:
            channel.submit(event)
        assert wait_for(lambda: channel.retries >= 3)  # the receiver is down: nothing goes through
        assert channel.stats()["backlog"] == 15 and channel.delivered == 0
        receiver.start()
        for event in events[15:]:
            channel.submit(event)
        assert wait_for(lambda: channel.delivered == 25)
    finally:
        channel.close()
    assert [body["id"] for body in receiver.received()] == [e.id for e in events]
    stats = channel.stats()
    assert stats["backlog"] == 0 and stats["backlog_peak"] >= 15 and stats["dropped"] == 0
    assert list((tmp_path / "spool").glob("*.json")) == []


def test_webhook_events_survive_a_restart(receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    first = webhook(receiver.url, tmp_path / "spool", drain=0.0)
    events = make_events(12)
    for event in events[:8]:
        first.submit(event)
    first.close()  # the receiver never came up: everything stays on disk
    left = Spool(tmp_path / "spool", 100)
    assert len(left) == 8
    left.close()
    receiver.start()
    second = webhook(receiver.url, tmp_path / "spool")
    try:
        for event in events[8:]:
            second.submit(event)
        assert wait_for(lambda: len(receiver.received()) >= 12)
    finally:
        second.close()
    ids = [body["id"] for body in receiver.received()]
    assert ids == [e.id for e in events]  # oldest first, across the restart


def test_webhook_sets_refused_events_aside_and_goes_on(receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    events = make_events(3)
    receiver.refuse.add(events[1].id)
    receiver.start()
    channel = webhook(receiver.url, tmp_path / "spool")
    for event in events:
        channel.submit(event)
    channel.close()
    assert [body["id"] for body in receiver.received()] == [events[0].id, events[2].id]
    assert channel.rejected == 1 and len(list((tmp_path / "spool" / "rejected").iterdir())) == 1


def test_a_lost_answer_means_a_repeat_with_the_same_id(receiver: Receiver, tmp_path: Path) -> None:  # noqa: F811
    events = make_events(4)
    receiver.hang_up.add(events[2].id)
    receiver.start()
    channel = webhook(receiver.url, tmp_path / "spool")
    for event in events:
        channel.submit(event)
    channel.close()
    ids = [body["id"] for body in receiver.received()]
    assert ids == [events[0].id, events[1].id, events[2].id, events[2].id, events[3].id]
    assert list(dict.fromkeys(ids)) == [e.id for e in events]  # de-duplicated by id: nothing lost


def test_spool_is_bounded_and_counts_what_it_drops(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_items=3)
    for i in range(5):
        spool.put({"id": str(i)})
    assert len(spool) == 3 and spool.dropped == 2
    item = spool.peek()
    assert item is not None and json.loads(item[1])["id"] == "2"
    with pytest.raises(SinkError, match="in use by another run"):
        Spool(tmp_path, max_items=3)
    spool.close()
    assert len(Spool(tmp_path, max_items=3)) == 3


def test_a_stuck_output_never_blocks_its_caller() -> None:
    release = threading.Event()
    handled: list[int] = []

    class Stuck:
        def handle(self, item: int) -> None:
            release.wait(30)
            handled.append(item)

        def close(self) -> None:
            pass

    worker: OutputWorker[int] = OutputWorker("stuck", Stuck(), queue_size=10)
    worker.submit(0)
    assert wait_for(lambda: worker.stats()["backlog"] == 1 and not worker._items)  # 0 is being handled
    for i in range(1, 100):
        worker.submit(i)  # returns at once although the handler is stuck
    stats = worker.stats()
    assert stats["dropped"] == 89 and stats["backlog"] == 11 and stats["backlog_peak"] == 10
    release.set()
    worker.close()
    assert handled == [0, *range(90, 100)]  # the oldest waiting items were the ones dropped


@needs_mosquitto
def test_mqtt_topics_payloads_and_retained_availability(mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto)
    config = MqttOutput(port=mosquitto, prefix="streamvision")
    worker = OutputWorker("mqtt", MqttPublisher(config, "rtsp://u:pw@cam/live"), 64)
    events = make_events(5, source="rtsp://u:pw@cam/live")
    status = [
        Event(kind, "rtsp://u:pw@cam/live", "2026-01-01T00:00:00.000Z", "source", extra={"reason": "test"})
        for kind in ("source_offline", "source_online")
    ]
    base = "streamvision/rtsp:_***@cam_live"
    try:
        for event in events:
            worker.submit(event)
        assert wait_for(lambda: len(subscriber.events()) == 5)
        assert wait_for(lambda: subscriber.on(f"{base}/availability") == [b"online"])
        for event in status:  # the source's state shows on the availability topic
            worker.submit(event)
        assert wait_for(lambda: subscriber.on(f"{base}/availability") == [b"online", b"offline", b"online"])
    finally:
        worker.close()
    assert wait_for(lambda: subscriber.on(f"{base}/availability")[-1:] == [b"offline"])
    received = subscriber.events()
    subscriber.close()
    topics = [f"{base}/object_appeared"] * 5 + [f"{base}/source_offline", f"{base}/source_online"]
    assert [topic for topic, _, _ in received] == topics
    assert [event["id"] for _, event, _ in received] == [e.id for e in events + status]
    assert all("pw" not in event["source"] for _, event, _ in received)
    assert worker.stats()["failed"] == 0 and worker.stats()["ack_ms"]["p50"] is not None
    late = Subscriber(mosquitto)  # a client that connects later gets the retained state
    try:
        assert wait_for(lambda: late.on(f"{base}/availability") == [b"offline"])
    finally:
        late.close()


@needs_mosquitto
def test_mqtt_last_will_says_offline_when_streamvision_dies(mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto)
    script = (
        "import sys, time\n"
        "from streamvision.events.config import MqttOutput\n"
        "from streamvision.events.outputs.mqtt import MqttPublisher\n"
        f"p = MqttPublisher(MqttOutput(port={mosquitto}), 'cam')\n"
        "while not p.stats()['connected']: time.sleep(0.02)\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None and process.stdout.readline().strip() == "up"
        topic = "streamvision/cam/availability"
        assert wait_for(lambda: subscriber.on(topic) == [b"online"])
        os.kill(process.pid, signal.SIGKILL)  # no goodbye: the broker sends the will
        assert wait_for(lambda: subscriber.on(topic) == [b"online", b"offline"])
    finally:
        process.kill()
        process.wait(10)
        subscriber.close()


@pytest.mark.parametrize("port", [0])
def test_mqtt_output_rejects_a_bad_port(port: int) -> None:
    with pytest.raises(ValueError):
        MqttOutput(port=port)


def test_a_spool_that_cannot_be_written_loses_events_it_counts_without_raising(
    receiver: Receiver,  # noqa: F811
    tmp_path: Path,
) -> None:
    channel = webhook(receiver.url, tmp_path / "spool", drain=0.0)
    try:
        shutil.rmtree(tmp_path / "spool")  # the folder is gone: no event file can be written
        channel.submit(make_events(1)[0])
    finally:
        channel.close()
    assert channel.stats()["failed"] == 1 and channel.stats()["backlog"] == 0
