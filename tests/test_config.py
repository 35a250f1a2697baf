"""Config validation: every bad key or value is one ConfigError that names it."""

from pathlib import Path

import pytest

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
