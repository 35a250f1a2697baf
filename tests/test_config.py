"""Config validation: every bad key or value is one ConfigError that names it."""

from pathlib import Path

import pytest
import yaml

from streamvision.cluster.fleet_config import load_fleet
from streamvision.config import default_config, load_config, parse_config, with_overrides
from streamvision.errors import ConfigError
from streamvision.stages.faces import FaceDetectionConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_load() -> None:
    """Pipelines, and the fleets of ``streamvision cluster run`` (fleet*.yaml) with every pipeline in them."""
    paths = sorted(CONFIGS.glob("*.yaml"))
    fleets = [path for path in paths if path.name.startswith("fleet")]
    assert paths and fleets
    for path in paths:
        if path in fleets:
            assert load_fleet(path).members
        else:
            load_config(path)


def test_minimal_config_with_source_shorthand() -> None:
    config = parse_config({"source": 0, "stages": [{"type": "face_detection", "score_threshold": 0.7}]})
    assert config.source.uri == "0"
    stage = config.stages[0]
    assert isinstance(stage, FaceDetectionConfig) and stage.score_threshold == 0.7


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"source": "a.mp4", "colour": 1}, "config: colour: unknown key"),
        ({"source": "a.mp4", "outputs": {"vidoe": "x.mp4"}}, "config: outputs.vidoe: unknown key"),
        (
            {"source": "a.mp4", "stages": [{"type": "face_detection", "score_threshold": 2}]},
            "config: stages.0.score_threshold: Input should be less than 1",
        ),
        (
            {"source": "a.mp4", "stages": [{"type": "face_detection", "modle": "x"}]},
            "config: stages.0.modle: unknown key",
        ),
        (
            {"source": "a.mp4", "stages": [{"type": "flux"}]},
            "stages.0.type: unknown stage type 'flux'; valid: classify, face_detection",
        ),
        ({"source": "a.mp4", "stages": [{"score_threshold": 0.5}]}, "stages.0: each stage needs a 'type'"),
        (
            {"source": "a.mp4", "max_frames": 0},
            "config: max_frames: Input should be greater than or equal to 1",
        ),
        ({"stages": []}, "config: source: Field required"),
        (["source"], "expected a mapping"),
    ],
)
def test_bad_config_names_the_key(raw: object, message: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config(raw)
    assert message in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("source: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_command_line_overrides_the_file() -> None:
    config = with_overrides(default_config(), source="clip.mp4", events="-", max_frames=5, output=None)
    assert config.source.uri == "clip.mp4"
    assert config.outputs.events == "-"
    assert config.outputs.video == default_config().outputs.video
    assert config.max_frames == 5


def test_a_command_line_source_keeps_the_config_source_settings() -> None:
    camera = load_config(CONFIGS / "rtsp_surveillance.yaml")
    config = with_overrides(camera, source=["rtsp://10.0.0.9/live", "rtsp://10.0.0.10/live"])
    assert [s.uri for s in config.sources] == ["rtsp://10.0.0.9/live", "rtsp://10.0.0.10/live"]
    for source in config.sources:
        assert source.id is None  # made from the new URI, not the config's "yard"
        assert source.model_copy(update={"uri": camera.source.uri, "id": camera.source.id}) == camera.source


def test_copy_with_source_replaces_the_only_source() -> None:
    from streamvision.config import SourceConfig

    config = default_config().model_copy(update={"source": SourceConfig(uri="other.mp4")})
    assert [s.uri for s in config.sources] == ["other.mp4"] and config.source.uri == "other.mp4"


def test_decoder_override_applies_to_object_detection_stages() -> None:
    config = with_overrides(default_config(), decoder="centernet")
    assert [getattr(s, "decoder", None) for s in config.stages] == ["centernet", None, None]
    with pytest.raises(ConfigError, match="unknown decoder 'yolo9'"):
        with_overrides(default_config(), decoder="yolo9")
    faces = parse_config({"source": "a.mp4", "stages": [{"type": "face_detection"}]})
    with pytest.raises(ConfigError, match="no object_detection stage"):
        with_overrides(faces, decoder="yolov8")


SKIPPING_DETECTOR = {"type": "object_detection", "name": "cars", "every": 3}
READERS = {
    "classify": {"type": "classify", "model": "m", "on": "cars"},
    "pose": {"type": "pose", "on": "cars"},
    "recognize": {"type": "recognize", "gallery": "g.npz", "on": "cars"},
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_every_without_a_track_stage_is_an_error_at_load(tmp_path: Path, reader: str) -> None:
    path = tmp_path / "skips.yaml"
    zones = {"type": "zones", "on": "cars", "zones": [{"name": "z", "polygon": [[0, 0], [9, 0], [9, 9]]}]}
    path.write_text(
        yaml.safe_dump({"source": "a.mp4", "stages": [SKIPPING_DETECTOR, zones, READERS[reader]]})
    )
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert str(excinfo.value).startswith(
        f"{path}: stages.2 ({reader}): every: 3 of stages.0 (cars) needs a track stage on 'cars' "
        "before this stage"
    )
    assert "\n" not in str(excinfo.value) and "Value error" not in str(excinfo.value)


def test_every_is_fine_with_a_track_stage_on_whole_frames_or_when_it_is_1() -> None:
    tracked = [SKIPPING_DETECTOR, {"type": "track", "on": "cars"}, *READERS.values()]
    assert len(parse_config({"source": "a.mp4", "stages": tracked}).stages) == 5
    whole_frame = [SKIPPING_DETECTOR, {"type": "classify", "model": "m"}, {"type": "pose"}]
    assert len(parse_config({"source": "a.mp4", "stages": whole_frame}).stages) == 3
    every_frame = [{**SKIPPING_DETECTOR, "every": 1}, READERS["classify"]]
    assert len(parse_config({"source": "a.mp4", "stages": every_frame}).stages) == 2


def test_whole_config_errors_have_no_empty_location_or_pydantic_prefix() -> None:
    with pytest.raises(ConfigError) as excinfo:
        parse_config({"source": "a.mp4", "sources": ["b.mp4"]})
    assert str(excinfo.value) == "config: give either source or sources, not both"


def test_command_line_values_are_validated_as_the_file_would_be() -> None:
    rule_events = {"outputs": [{"type": "jsonl", "path": "run.jsonl"}]}
    with pytest.raises(ConfigError, match=r"'run\.jsonl' is written by two outputs"):
        parse_config({"source": "a.mp4", "outputs": {"events": "run.jsonl"}, "events": rule_events})
    config = parse_config({"source": "a.mp4", "events": rule_events})
    with pytest.raises(ConfigError) as excinfo:
        with_overrides(config, events="run.jsonl")
    assert str(excinfo.value) == (
        "command line: 'run.jsonl' is written by two outputs; rule events also go to outputs.events"
    )
    with pytest.raises(ConfigError, match="command line: max_frames: Input should be greater than or equal"):
        with_overrides(config, max_frames=0)
    assert with_overrides(config, events="frames.jsonl").outputs.events == "frames.jsonl"


def test_show_from_the_command_line_turns_the_window_on_or_off() -> None:
    windowed = parse_config({"source": "a.mp4", "outputs": {"show": True}})
    assert with_overrides(windowed, show=False).outputs.show is False
    assert with_overrides(windowed, show=None).outputs.show is True
    assert with_overrides(default_config(), show=True).outputs.show is True


def test_a_config_without_a_source_takes_the_command_line_one(tmp_path: Path) -> None:
    path = tmp_path / "stages.yaml"
    path.write_text("stages:\n  - type: face_detection\n")
    config = load_config(path, sources=["clip.mp4", "0"])
    assert [s.uri for s in config.sources] == ["clip.mp4", "0"]
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    assert (
        str(excinfo.value) == f"{path}: source: Field required; give one in the config or on the command line"
    )
    own = tmp_path / "own.yaml"
    own.write_text("source: a.mp4\n")
    assert load_config(own, sources=["b.mp4"]).source.uri == "a.mp4"  # with_overrides replaces it


@pytest.mark.parametrize(
    ("outputs", "clash"),
    [
        ({"video": "{clip}"}, "source and outputs.video"),
        ({"events": "{clip}"}, "source and outputs.events"),
        ({"report": "{link}"}, "source and outputs.report"),  # through a symbolic link
        ({"video": "x.mp4", "events": "./x.mp4"}, "outputs.video and outputs.events"),
        ({"video": "x.mp4", "report": "{tmp}/x.mp4"}, "outputs.video and outputs.report"),
    ],
)
def test_two_parts_of_a_run_never_name_the_same_file(
    tmp_path: Path, sample_clip: Path, monkeypatch: pytest.MonkeyPatch, outputs: dict[str, str], clash: str
) -> None:
    monkeypatch.chdir(tmp_path)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(sample_clip.read_bytes())
    (tmp_path / "link.mp4").symlink_to(clip)
    names = {"clip": str(clip), "link": "link.mp4", "tmp": str(tmp_path)}
    raw = {"source": "clip.mp4", "outputs": {k: v.format(**names) for k, v in outputs.items()}}
    with pytest.raises(ConfigError, match=f"config: {clash} name the same file"):
        parse_config(raw)


def test_an_event_output_folder_may_not_be_an_output_file(tmp_path: Path) -> None:
    raw = {
        "source": "sample:bikes",
        "outputs": {"video": str(tmp_path / "shots.mp4")},
        "events": {
            "rules": [{"type": "appear"}],
            "outputs": [{"type": "snapshot", "dir": str(tmp_path / "shots.mp4")}],
        },
    }
    with pytest.raises(ConfigError, match=r"outputs.video and events.outputs.0 \(snapshot\) name the same"):
        parse_config(raw)


def test_with_several_sources_each_source_is_checked_against_its_own_outputs(tmp_path: Path) -> None:
    from streamvision.fanout import per_source

    first = tmp_path / "out.b.mp4"
    first.write_bytes(b"")
    # out.mp4 becomes out.<id>.mp4 per source: the second source's output is the first source's file
    config = parse_config({"sources": [{"uri": str(first), "id": "x"}, {"uri": "sample:bikes", "id": "b"}],
                           "outputs": {"video": str(tmp_path / "out.mp4")}})  # fmt: skip
    with pytest.raises(ConfigError, match="name the same file"):
        per_source(config)
