"""The MQTT output against real mosquitto brokers: retained state topics (counts per label, zone
occupancy, line totals), Home Assistant discovery, TLS with a CA made here, and object lifecycle events
(start / update / end) joined by ``object_event_id``."""

from __future__ import annotations

import getpass
import json
import logging
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from streamvision.config import parse_config
from streamvision.errors import ConfigError, SinkError
from streamvision.events import Event
from streamvision.events.config import AppearRule, EventsConfig, MqttOutput, MqttTls, ObjectLifecycle
from streamvision.events.outputs.mqtt import Gauge, HomeAssistant, MqttChannel, StateCounter
from streamvision.frame import Detections, Frame, RegionCount, ZoneCounts
from tests.event_servers import (  # noqa: F401 - fixtures
    Subscriber,
    free_port,
    mosquitto,
    needs_mosquitto,
    wait_for,
)

MQTT_LOG = "streamvision.events.outputs.mqtt"
SCHEMA = json.loads(resources.files("streamvision.events").joinpath("event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=jsonschema.FormatChecker())
TIME = "2026-01-01T00:00:00.000Z"


def boxes(labels: list[str], tracks: list[int] | None = None) -> Detections:
    n = len(labels)
    return Detections(
        xyxy=np.tile(np.asarray([10, 10, 50, 90], np.float32), (n, 1)).reshape(n, 4),
        confidence=np.full(n, 0.9, np.float32),
        class_id=np.zeros(n, np.int32),
        class_name=np.asarray(labels, dtype=str).reshape(n),
        tracker_id=None if tracks is None else np.asarray(tracks, np.int64),
    )


def zone(name: str, inside: dict[str, int]) -> RegionCount:
    square = np.asarray([[0, 0], [100, 0], [100, 100], [0, 100]], np.float32)
    return RegionCount(name, "zone", square, inside, {}, {})


def line(name: str, entered: dict[str, int], exited: dict[str, int]) -> RegionCount:
    return RegionCount(name, "line", np.asarray([[0, 50], [100, 50]], np.float32), {}, entered, exited)


def frame(index: int, detections: Detections | None = None, *regions: RegionCount) -> Frame:
    made = Frame(np.zeros((120, 160, 3), np.uint8), "door", index, index / 10, 0.0)
    if detections is not None:
        made = made.with_result("objects", detections)
    if regions:
        made = made.with_result("zones", ZoneCounts(tuple(regions)))
    return made


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == MQTT_LOG and r.levelno >= level]


def retained(port: int, topic: str, count: int) -> dict[str, bytes]:
    """What a client that subscribes now gets for ``topic``: the broker's retained messages."""
    late = Subscriber(port, topic)
    try:
        assert wait_for(lambda: len(late.messages) >= count, 10), late.messages
        return {t: payload for t, payload, was_retained, _ in late.messages if was_retained}
    finally:
        late.close()


# 1. State topics: counts per label, zone occupancy, line totals; retained, on change only.


def test_counts_hold_for_state_frames_and_ignore_flicker_and_frames_without_detections() -> None:
    counter = StateCounter(None, None, hold_frames=2)
    person, car = Gauge("label", "person", "count"), Gauge("label", "car", "count")
    assert counter.update(frame(0, boxes(["person", "person", "car"]))) is None
    assert counter.update(frame(1, boxes(["person", "person", "car"]))) == {person: 2, car: 1}
    assert counter.update(frame(2, boxes(["person", "person", "car"]))) is None  # no change: nothing
    assert counter.update(frame(3, boxes(["person", "car"]))) is None  # one frame of 1: flicker
    assert counter.update(frame(4, boxes(["person", "person", "car"]))) is None
    assert counter.update(frame(5)) is None  # the detector skipped this frame: no observation
    assert counter.update(frame(6, boxes(["person"]))) is None
    assert counter.update(frame(7, boxes(["person"]))) == {person: 1, car: 0}  # a label seen stays, at 0
    # boxes a tracker has not confirmed (id -1) are no objects yet
    assert counter.update(frame(8, boxes(["person", "person"], [-1, 4]))) is None
    assert counter.update(frame(9, boxes(["person", "person"], [-1, 4]))) is None


def test_counts_of_chosen_labels_and_one_detection_result() -> None:
    counter = StateCounter("objects", ("person",), hold_frames=1)
    assert counter.values == {Gauge("label", "person", "count"): 0}
    faces = frame(0).with_result("faces", boxes(["face"])).with_result("objects", boxes(["person", "dog"]))
    assert counter.update(faces) == {Gauge("label", "person", "count"): 1}  # no dog, no face


def test_zone_occupancy_holds_and_line_totals_count_at_once() -> None:
    counter = StateCounter(None, None, hold_frames=3)
    drive, gate_in, gate_out = (
        Gauge("zone", "drive", "count"),
        Gauge("line", "gate", "in"),
        Gauge("line", "gate", "out"),
    )
    regions = (zone("drive", {"person": 1, "car": 1}), line("gate", {"person": 3}, {}))
    assert counter.update(frame(0, None, *regions)) == {gate_in: 3, gate_out: 0}
    assert counter.update(frame(1, None, *regions)) is None
    assert counter.update(frame(2, None, *regions)) == {gate_in: 3, gate_out: 0, drive: 2}
    regions = (zone("drive", {"person": 1, "car": 1}), line("gate", {"person": 3}, {"car": 1}))
    assert counter.update(frame(3, None, *regions)) == {gate_in: 3, gate_out: 1, drive: 2}


@needs_mosquitto
def test_state_topics_are_retained_and_published_on_change_only(mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto, "streamvision/door/#")
    channel = MqttChannel(MqttOutput(port=mosquitto, state=True, state_frames=2), "door")
    base = "streamvision/door"
    index = 0

    def show(frames: int, labels: tuple[str, ...], crossed: int) -> None:
        nonlocal index
        for _ in range(frames):
            regions = (zone("drive", dict.fromkeys(labels, 1)), line("gate", {"person": crossed}, {}))
            channel.observe(frame(index, boxes(list(labels)), *regions))
            index += 1

    def on(topic: str) -> list[bytes]:
        return subscriber.on(f"{base}/{topic}")

    try:
        assert wait_for(lambda: channel.stats()["connected"])
        show(30, ("person", "person", "car"), crossed=0)  # 30 frames, one state
        assert wait_for(lambda: on("person/count") == [b"2"] and on("line/gate/in") == [b"0"])
        show(10, ("person", "person", "car"), crossed=1)
        assert wait_for(lambda: on("line/gate/in") == [b"0", b"1"])  # a line total at once
        show(1, ("person",), crossed=1)  # a one-frame dip is no change
        show(5, ("person", "person", "car"), crossed=1)
        show(4, (), crossed=1)
        assert wait_for(lambda: on("person/count") == [b"2", b"0"] and on("zone/drive/count") == [b"2", b"0"])
    finally:
        channel.close()
    assert on("car/count") == [b"1", b"0"]
    assert on("line/gate/out") == [b"0"]
    subscriber.close()
    stats = channel.stats()
    assert stats["state_published"] == 9 and stats["state_failed"] == 0  # 2 + 2 + 2 + 2 + 1 values
    assert stats["submitted"] == 0 and stats["failed"] == 0  # no event counted for state messages
    got = retained(mosquitto, f"{base}/#", 6)  # a client that subscribes later gets the state
    assert got[f"{base}/person/count"] == b"0" and got[f"{base}/line/gate/in"] == b"1"
    assert got[f"{base}/availability"] == b"offline"


@needs_mosquitto
def test_without_state_observe_publishes_nothing(mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto)
    channel = MqttChannel(MqttOutput(port=mosquitto), "door")
    try:
        for i in range(5):
            channel.observe(frame(i, boxes(["person"])))
        assert wait_for(lambda: subscriber.on("streamvision/door/availability") == [b"online"])
    finally:
        channel.close()
    subscriber.close()
    assert {topic for topic, *_ in subscriber.messages} == {"streamvision/door/availability"}
    assert "state_published" not in channel.stats()


# 2. Home Assistant discovery.


def test_home_assistant_configs_name_the_device_and_its_availability() -> None:
    ha = HomeAssistant("streamvision/rtsp:_***@cam_live", "rtsp://u:pw@cam/live", "homeassistant")
    (sensor_topic, sensor), (binary_topic, binary) = ha.configs(Gauge("zone", "front door", "count"))
    assert sensor_topic == "homeassistant/sensor/streamvision_rtsp_cam_live/zone_front_door_count/config"
    assert (
        binary_topic
        == "homeassistant/binary_sensor/streamvision_rtsp_cam_live/zone_front_door_occupancy/config"
    )
    sensor_config, binary_config = json.loads(sensor), json.loads(binary)
    assert sensor_config["state_topic"] == "streamvision/rtsp:_***@cam_live/zone/front_door/count"
    assert sensor_config["unique_id"] == "streamvision_rtsp_cam_live_zone_front_door_count"
    assert sensor_config["name"] == "zone front door count" and sensor_config["state_class"] == "measurement"
    assert (
        binary_config["device_class"] == "occupancy"
        and binary_config["state_topic"] == sensor_config["state_topic"]
    )
    for config in (sensor_config, binary_config):
        assert config["availability_topic"] == "streamvision/rtsp:_***@cam_live/availability"
        assert config["device"]["name"] == "streamvision rtsp://***@cam/live"
        assert config["device"]["identifiers"] == ["streamvision_rtsp_cam_live"]
        assert "pw" not in json.dumps(config)
    ((line_topic, line_config),) = ha.configs(Gauge("line", "gate", "out"))
    assert line_topic.endswith("/sensor/streamvision_rtsp_cam_live/line_gate_out/config")
    assert json.loads(line_config)["state_class"] == "total_increasing"


@needs_mosquitto
def test_home_assistant_discovery_is_retained_announced_first_and_again_on_its_birth(
    mosquitto: int,  # noqa: F811
) -> None:
    import paho.mqtt.client as mqtt

    subscriber = Subscriber(mosquitto, "#")
    config = MqttOutput(port=mosquitto, home_assistant=True, state_labels=("person",), state_frames=1)
    channel = MqttChannel(config, "door")
    node = "homeassistant/sensor/streamvision_door"
    person_config = f"{node}/person_count/config"
    occupancy_config = "homeassistant/binary_sensor/streamvision_door/person_occupancy/config"
    try:
        # a label asked for is announced, and published at 0, from the start; its config comes first
        assert wait_for(lambda: subscriber.on("streamvision/door/person/count") == [b"0"])
        topics = [topic for topic, *_ in subscriber.messages]
        assert topics.index(person_config) < topics.index("streamvision/door/person/count")
        assert len(subscriber.on(occupancy_config)) == 1
        channel.observe(frame(0, boxes(["person", "person"]), zone("drive", {"person": 2})))
        assert wait_for(lambda: subscriber.on("streamvision/door/zone/drive/count") == [b"2"])
        assert len(subscriber.on(f"{node}/zone_drive_count/config")) == 1
        assert subscriber.on("streamvision/door/person/count") == [b"0", b"2"]
        # Home Assistant restarts: its birth message asks for every config and value again
        home_assistant = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        home_assistant.connect("127.0.0.1", mosquitto)
        home_assistant.loop_start()
        home_assistant.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
        home_assistant.disconnect()
        home_assistant.loop_stop()
        assert wait_for(lambda: len(subscriber.on(person_config)) == 2)
        assert wait_for(lambda: subscriber.on("streamvision/door/zone/drive/count") == [b"2", b"2"])
    finally:
        channel.close()
    assert wait_for(lambda: subscriber.on("streamvision/door/availability")[-1:] == [b"offline"])
    subscriber.close()
    # a clean end keeps the configs (Home Assistant shows the entities as unavailable)
    kept = retained(mosquitto, "homeassistant/#", 4)
    assert set(kept) == {
        person_config,
        occupancy_config,
        f"{node}/zone_drive_count/config",
        "homeassistant/binary_sensor/streamvision_door/zone_drive_occupancy/config",
    }
    assert json.loads(kept[person_config])["state_topic"] == "streamvision/door/person/count"


@needs_mosquitto
def test_after_a_broker_restart_the_latest_state_and_the_configs_are_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    broker = Broker(tmp_path, (port,))
    channel = MqttChannel(MqttOutput(port=port, home_assistant=True, state_frames=1), "door")
    counts: list[str] = []  # what the channel hands the broker for the count topic, in order
    publish = channel.publisher.publish_retained

    def recorded(topic: str, payload: str) -> object:
        if topic == "streamvision/door/person/count":
            counts.append(payload)
        return publish(topic, payload)

    monkeypatch.setattr(channel.publisher, "publish_retained", recorded)
    try:
        channel.observe(frame(0, boxes(["person"])))
        assert wait_for(lambda: retained(port, "streamvision/door/person/count", 1), 10)
        broker.stop()  # no persistence: its retained messages are gone
        assert wait_for(lambda: not channel.stats()["connected"], 10)
        channel.observe(frame(1, boxes(["person", "person"])))  # stale by the time the broker is back
        channel.observe(frame(2, boxes(["person", "person", "person"])))
        broker.start()
        assert wait_for(lambda: channel.stats()["connected"], 15)
        got = retained(port, "#", 4)
        assert got["streamvision/door/person/count"] == b"3"
        assert got["streamvision/door/availability"] == b"online"
        assert "homeassistant/sensor/streamvision_door/person_count/config" in got
        assert "homeassistant/binary_sensor/streamvision_door/person_occupancy/config" in got
    finally:
        channel.close()
        broker.stop()
    # 1, then 3, never the stale 2 (a value may go out more than once: each connection resends it)
    assert counts[0] == "1" and counts[-1] == "3" and "2" not in counts, counts


# 3. TLS, against mosquitto with a CA made here.


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server: tuple[Path, Path]
    misnamed_server: tuple[Path, Path]
    client: tuple[Path, Path]


def _openssl(*args: str | Path, cwd: Path) -> None:
    subprocess.run(["openssl", *map(str, args)], cwd=cwd, check=True, capture_output=True)


def _new_ca(folder: Path, name: str) -> tuple[Path, Path]:
    key, cert = folder / f"{name}.key", folder / f"{name}.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}", cwd=folder,
    )  # fmt: skip
    return cert, key


def _signed(folder: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, request, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    (folder / f"{name}.ext").write_text(extensions + "\n")
    _openssl(
        "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", request, "-subj", f"/CN={name}", cwd=folder,
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial",
        "-out", cert, "-days", "2", "-extfile", folder / f"{name}.ext", cwd=folder,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for 127.0.0.1, one for another name, and a client certificate;
    and a second CA that signed none of them."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("pki")
    ca = _new_ca(folder, "sv-test-ca")
    return Pki(
        ca=ca[0],
        other_ca=_new_ca(folder, "sv-other-ca")[0],
        server=_signed(folder, "server", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        misnamed_server=_signed(folder, "misnamed", ca, "subjectAltName=DNS:elsewhere.example"),
        client=_signed(folder, "streamvision", ca, "extendedKeyUsage=clientAuth"),
    )


@dataclass(frozen=True)
class TlsBroker:
    plain: int
    tls: int
    misnamed: int
    mutual: int
    """Requires a client certificate signed by the CA."""


class Broker:
    """A mosquitto of this module's own, on loopback ports it is told, with ``settings`` added to its
    config; :meth:`stop` and :meth:`start` again make a broker that lost every retained message."""

    def __init__(self, folder: Path, ports: tuple[int, ...], settings: str = "") -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            pytest.skip("needs Debian's mosquitto")
        self.command = [binary, "-c", str(folder / "mosquitto.conf")]
        self.ports = ports
        self.log_path = folder / "mosquitto.log"
        (folder / "mosquitto.conf").write_text(
            # started as root, mosquitto would become user "mosquitto", who cannot read pytest's tmp_path
            f"user {getpass.getuser()}\nallow_anonymous true\npersistence false\n"
            + "".join(f"listener {port} 127.0.0.1\n" for port in ports[:1])
            + settings
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with self.log_path.open("a") as log:
            process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)
        self.process = process

        def accepting() -> bool:
            try:
                for port in self.ports:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return True
            except OSError:
                return process.poll() is not None

        assert wait_for(accepting, 10.0) and process.poll() is None, self.log_path.read_text()

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


@pytest.fixture
def tls_broker(pki: Pki, tmp_path: Path) -> Iterator[TlsBroker]:
    """mosquitto with a plain listener (for the test's subscriber) and three TLS listeners."""
    ports = TlsBroker(free_port(), free_port(), free_port(), free_port())

    def tls_listener(port: int, cert: tuple[Path, Path]) -> str:
        return f"listener {port} 127.0.0.1\ncafile {pki.ca}\ncertfile {cert[0]}\nkeyfile {cert[1]}\n"

    settings = (
        tls_listener(ports.tls, pki.server)
        + tls_listener(ports.misnamed, pki.misnamed_server)
        + tls_listener(ports.mutual, pki.server)
        + "require_certificate true\n"
    )
    broker = Broker(tmp_path, (ports.plain, ports.tls, ports.misnamed, ports.mutual), settings)
    try:
        yield ports
    finally:
        broker.stop()


def deliver(config: MqttOutput, plain_port: int, n: int = 3) -> tuple[dict[str, Any], list[bytes]]:
    """Publishes ``n`` events through ``config``; the output's figures after closing, and the events
    a plain subscriber got."""
    subscriber = Subscriber(plain_port, "streamvision/door/object_appeared")
    channel = MqttChannel(config, "door")
    try:
        wait_for(lambda: channel.stats()["connected"], 5)
        for i in range(n):
            channel.submit(Event("object_appeared", "door", TIME, "appear", frame=i, class_name="person"))
        wait_for(lambda: channel.stats()["delivered"] == n, 5)
    finally:
        channel.close()
    wait_for(lambda: len(subscriber.messages) >= n, 2)
    subscriber.close()
    return channel.stats(), subscriber.on("streamvision/door/object_appeared")


@needs_mosquitto
def test_tls_with_our_ca_delivers(tls_broker: TlsBroker, pki: Pki) -> None:
    stats, got = deliver(MqttOutput(port=tls_broker.tls, tls=MqttTls(ca=pki.ca)), tls_broker.plain)
    assert stats["delivered"] == 3 and stats["failed"] == 0 and len(got) == 3


@needs_mosquitto
def test_tls_client_certificate_for_a_broker_that_requires_one(tls_broker: TlsBroker, pki: Pki) -> None:
    tls = MqttTls(ca=pki.ca, cert=pki.client[0], key=pki.client[1])
    stats, got = deliver(MqttOutput(port=tls_broker.mutual, tls=tls), tls_broker.plain)
    assert stats["delivered"] == 3 and len(got) == 3


@needs_mosquitto
@pytest.mark.parametrize("case", ["wrong CA", "host name", "no client certificate"])
def test_a_tls_failure_is_one_clear_error_and_no_traceback(
    case: str,
    tls_broker: TlsBroker,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG, logger=MQTT_LOG)
    port, tls = {
        "wrong CA": (tls_broker.tls, MqttTls(ca=pki.other_ca)),
        "host name": (tls_broker.misnamed, MqttTls(ca=pki.ca)),
        "no client certificate": (tls_broker.mutual, MqttTls(ca=pki.ca)),
    }[case]
    config = MqttOutput(port=port, tls=tls, drain_timeout=0.5)
    channel = MqttChannel(config, "door")
    try:
        assert wait_for(lambda: messages(caplog, logging.WARNING), 10)
        for i in range(3):
            channel.submit(Event("object_appeared", "door", TIME, "appear", frame=i))
        assert wait_for(lambda: channel.stats()["backlog"] == 3, 5)
    finally:
        channel.close()
    stats = channel.stats()
    assert stats["delivered"] == 0 and stats["failed"] == 3
    said = messages(caplog, logging.WARNING)
    unreachable = [text for text in said if "unreachable" in text]
    assert len(unreachable) == 1, said
    untrusted = r"\(TLS: the broker's certificate is not trusted: "
    expected = {
        "wrong CA": untrusted + r"self.signed certificate in certificate chain; check tls.ca",
        "host name": untrusted + r"IP address mismatch, certificate is not valid for '127.0.0.1'; check",
        "no client certificate": r"\(lost: .*CERTIFICATE_REQUIRED\] tlsv13 alert certificate required",
    }[case]
    assert re.search(expected, unreachable[0]), unreachable
    # refused by TLS: nothing mends it by itself
    assert [r.levelno for r in caplog.records if "unreachable" in r.getMessage()] == [logging.ERROR]
    assert all(r.exc_info is None for r in caplog.records)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err + caplog.text


@needs_mosquitto
def test_tls_insecure_skips_only_the_host_name_check(tls_broker: TlsBroker, pki: Pki) -> None:
    stats, got = deliver(
        MqttOutput(port=tls_broker.misnamed, tls=MqttTls(ca=pki.ca, insecure=True)), tls_broker.plain
    )
    assert stats["delivered"] == 3 and len(got) == 3
    stats, got = deliver(  # the chain is still checked
        MqttOutput(port=tls_broker.misnamed, tls=MqttTls(ca=pki.other_ca, insecure=True), drain_timeout=0.2),
        tls_broker.plain,
    )
    assert stats["delivered"] == 0 and got == []


def test_tls_files_that_cannot_be_used_are_named(pki: Pki, tmp_path: Path) -> None:
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    cases = [
        (MqttTls(ca=tmp_path / "missing.crt"), "tls.ca: .*missing.crt is not a readable file"),
        (MqttTls(ca=not_pem), "tls.ca: .*ca.txt holds no usable CA certificate"),
        (MqttTls(ca=pki.ca, cert=pki.client[0], key=pki.server[1]), "no matching certificate and key"),
    ]
    for tls, problem in cases:
        with pytest.raises(SinkError, match=problem):
            MqttChannel(MqttOutput(port=free_port(), tls=tls), "door")


def test_tls_settings_and_their_port() -> None:
    assert MqttOutput().port == 1883
    assert MqttOutput(tls=MqttTls()).port == 8883
    assert MqttOutput(tls=MqttTls(), port=18883).port == 18883
    raw = {"source": "a.mp4", "events": {"outputs": [{"type": "mqtt", "tls": True, "home_assistant": True}]}}
    mqtt = parse_config(raw).events.outputs[0]  # type: ignore[union-attr]
    assert isinstance(mqtt, MqttOutput) and mqtt.tls == MqttTls() and mqtt.port == 8883
    assert mqtt.publishes_state and not mqtt.state
    bad = [
        (
            {"tls": {"key": "client.key"}},
            "events.outputs.0.mqtt.tls: key is set but cert is not",
        ),
        ({"tls": {"ca": "ca.crt", "verify": False}}, "events.outputs.0.mqtt.tls.verify"),
        ({"discovery_prefix": "home/#"}, "events.outputs.0.mqtt.discovery_prefix"),
        ({"prefix": "cams/+"}, "MQTT wildcards"),
        ({"state_frames": 0}, "events.outputs.0.mqtt.state_frames"),
    ]
    for settings, problem in bad:
        raw = {"source": "a.mp4", "events": {"outputs": [{"type": "mqtt", **settings}]}}
        with pytest.raises(ConfigError) as excinfo:
            parse_config(raw)
        assert problem in str(excinfo.value)


# 4. Object lifecycle: start / update / end, joined by object_event_id.


def lifecycle(object_event_id: str = "0" * 31 + "1") -> list[Event]:
    common = {"track_id": 7, "class_name": "person"}
    return [
        Event("object_appeared", "door", TIME, "appear", score=0.6, **common,
              extra={"phase": "start", "object_event_id": object_event_id, "zones": ()}),
        Event("object_updated", "door", TIME, "appear", score=0.9, zone=None, **common,
              extra={"phase": "update", "object_event_id": object_event_id, "zones": ("drive",)}),
        Event("object_left", "door", TIME, "appear", score=0.7, **common,
              extra={"phase": "end", "object_event_id": object_event_id, "zones": ("drive",),
                     "duration_s": 4.2}),
    ]  # fmt: skip


def test_lifecycle_events_follow_the_schema_and_survive_a_round_trip() -> None:
    for event in lifecycle():
        record = event.to_record()
        VALIDATOR.validate(record)
        assert Event.from_record(json.loads(json.dumps(record))) == event
    start, update, end = (event.to_record() for event in lifecycle())
    assert update["zones"] == ["drive"] and end["duration_s"] == 4.2
    for bad in (
        {**start, "phase": "end"},  # a phase of another type
        {k: v for k, v in update.items() if k != "phase"},  # object_updated always has one
        {k: v for k, v in end.items() if k != "object_event_id"},
        {**start, "object_event_id": "not-hex"},
        {**update, "zones": ["drive", "drive"]},
    ):
        assert not VALIDATOR.is_valid(bad), bad
    old = Event("object_appeared", "door", TIME, "appear").to_record()
    assert VALIDATOR.is_valid(old) and "phase" not in old  # events without a lifecycle are unchanged


@pytest.mark.parametrize(
    ("type_", "extra", "problem"),
    [
        (
            "object_left",
            {"phase": "start", "object_event_id": "a", "zones": ()},
            "object_left takes phase 'end'",
        ),
        ("object_updated", {}, "object_updated takes phase 'update', got phase None"),
        (
            "zone_entered",
            {"phase": "update", "object_event_id": "a", "zones": ()},
            "zone_entered takes no phase",
        ),
        ("object_appeared", {"phase": "start", "zones": ()}, "needs object_event_id"),
    ],
)
def test_an_event_refuses_a_lifecycle_that_does_not_fit(
    type_: str, extra: dict[str, Any], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        Event(type_, "door", TIME, "appear", extra=extra)


def test_lifecycle_setting_of_the_appear_rule() -> None:
    assert AppearRule().lifecycle is None
    assert AppearRule.model_validate({"lifecycle": True}).lifecycle == ObjectLifecycle()
    assert AppearRule.model_validate({"lifecycle": False}).lifecycle is None
    rule = AppearRule.model_validate({"lifecycle": {"update_interval": 1, "leave_frames": 10}})
    assert rule.lifecycle == ObjectLifecycle(update_interval=1, leave_frames=10)
    raw = {"source": "a.mp4", "events": {"rules": [{"type": "appear", "lifecycle": {"every": 1}}]}}
    with pytest.raises(ConfigError, match=r"events.rules.0.appear.lifecycle"):
        parse_config(raw)


@needs_mosquitto
def test_lifecycle_events_reach_mqtt_on_their_topics_and_join(mosquitto: int) -> None:  # noqa: F811
    subscriber = Subscriber(mosquitto)
    channel = MqttChannel(MqttOutput(port=mosquitto), "door")
    events = lifecycle("ab" * 16)
    try:
        for event in events:
            channel.submit(event)
        assert wait_for(lambda: len(subscriber.events()) == 3)
    finally:
        channel.close()
    subscriber.close()
    got = subscriber.events()
    assert [topic.rsplit("/", 1)[1] for topic, _, _ in got] == [
        "object_appeared",
        "object_updated",
        "object_left",
    ]
    assert [e["phase"] for _, e, _ in got] == ["start", "update", "end"]
    assert {e["object_event_id"] for _, e, _ in got} == {"ab" * 16}


def test_an_appear_rule_with_lifecycle_follows_an_object_from_start_to_end() -> None:
    from streamvision.events.engine import RuleEngine

    config = EventsConfig(
        zones={"drive": ((100, 0), (200, 0), (200, 120), (100, 120))},
        rules=(
            AppearRule(debounce_frames=2, lifecycle=ObjectLifecycle(update_interval=0.4, leave_frames=3)),
        ),
    )
    engine = RuleEngine(config)

    def at(index: int, x: float | None) -> Frame:
        if x is None:
            return frame(index, boxes([], []))
        made = boxes(["person"], [7])
        made.xyxy[:] = (x - 10, 50, x + 10, 90)
        return frame(index, made)

    # frames every 0.1 s: outside the zone, into it at frame 6, gone from frame 15
    xs: list[float | None] = [50.0] * 6 + [150.0] * 9 + [None] * 5
    found = [event for i, x in enumerate(xs) for event in engine.process(at(i, x))]
    for event in found:
        VALIDATOR.validate(event.to_record())
    assert [(e.type, e.extra["phase"], e.frame) for e in found] == [
        ("object_appeared", "start", 1),
        ("object_updated", "update", 6),
        ("object_left", "end", 17),
    ]
    assert len({e.extra["object_event_id"] for e in found}) == 1
    assert [e.extra["zones"] for e in found] == [(), ("drive",), ("drive",)]
    assert found[-1].extra["duration_s"] == pytest.approx(1.4)  # first to last frame seen


def test_lifecycle_updates_wait_for_their_interval_and_a_start_in_cooldown_silences_the_life() -> None:
    from streamvision.events.engine import RuleEngine

    rule = AppearRule(
        debounce_frames=1, cooldown=5, lifecycle=ObjectLifecycle(update_interval=1, leave_frames=2)
    )
    engine = RuleEngine(EventsConfig(rules=(rule,)))

    def seen(index: int, score: float | None, track: int = 7) -> Frame:
        if score is None:
            return frame(index, boxes([], []))
        made = boxes(["person"], [track])
        made.confidence[:] = score
        return frame(index, made)

    # frames every 0.1 s; the score climbs: one update per second at most, the latest best then
    scores: list[float | None] = [0.5, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.9, 0.9, None, None]
    found = [event for i, score in enumerate(scores) for event in engine.process(seen(i, score))]
    assert [(e.type, e.frame, round(e.score or 0, 2)) for e in found] == [
        ("object_appeared", 0, 0.5),
        ("object_updated", 10, 0.7),  # 0.6 and 0.7 came within the first second: one update, at 1.0 s
        ("object_left", 14, 0.9),
    ]
    # the same track again at once: its start falls in the cooldown, so no update and no end either
    again = [
        event
        for i, score in enumerate([0.9, 0.95, None, None], 15)
        for event in engine.process(seen(i, score))
    ]
    assert again == []
    for event in found:
        VALIDATOR.validate(event.to_record())
