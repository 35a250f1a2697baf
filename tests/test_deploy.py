"""The container files, checked without Docker: the Dockerfile, .dockerignore, compose.yaml and the
configs they point at agree with each other and with the package (no image is built here)."""

from __future__ import annotations

import json
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamvision.config import PipelineConfig, load_config
from streamvision.events.config import MqttOutput
from streamvision.runtime.manifest import ModelRegistry

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, with continuation lines joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def exec_form(arguments: str) -> list[str]:
    """A JSON-array instruction's words (ENTRYPOINT, CMD); the shell form is refused."""
    words = json.loads(arguments)
    assert isinstance(words, list), f"not the exec (JSON array) form: {arguments}"
    return [str(word) for word in words]


def copy_sources(arguments: str) -> tuple[list[str], str, dict[str, str]]:
    """A COPY's sources, destination and ``--flag=value`` options."""
    words = shlex.split(arguments)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return paths[:-1], paths[-1], flags


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether Docker leaves ``path`` (relative, ``/``-separated) out of the build context: the last
    pattern matching the path or one of its parent folders decides, ``!`` re-includes."""

    def regex(pattern: str) -> re.Pattern[str]:
        out = ""
        for part in re.split(r"(\*\*/?|\*|\?)", pattern.strip("/")):
            out += {"**/": "(?:.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(part, re.escape(part))
        return re.compile(out)

    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        if any(regex(pattern.lstrip("!")).fullmatch(c) for c in candidates):
            excluded = not negated
    return excluded


def interpolate(value: str) -> str:
    """Compose's ``${NAME:-default}`` with nothing set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def mounts(volumes: list[str]) -> dict[str, Path]:
    """Compose short-syntax bind mounts: container path -> host path (from the compose file's folder)."""
    found = {}
    for volume in volumes:
        host, container = volume.split(":")[:2]
        found[container] = (ROOT / host).resolve()
    return found


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return dockerfile_instructions(ROOT / "Dockerfile")


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    start = max(i for i, (keyword, _) in enumerate(dockerfile) if keyword == "FROM")
    return dockerfile[start:]


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def image_config_path(final_stage: list[tuple[str, str]]) -> tuple[str, Path]:
    """The config the default CMD runs: its path in the image and the build-context file copied there."""
    cmd = exec_form(next(args for keyword, args in final_stage if keyword == "CMD"))
    config = cmd[cmd.index("--config") + 1]
    for keyword, args in final_stage:
        if keyword == "COPY":
            sources, destination, flags = copy_sources(args)
            if "from" not in flags and config.startswith(destination.rstrip("/") + "/"):
                (source,) = sources
                return config, ROOT / source / config[len(destination.rstrip("/")) + 1 :]
    raise AssertionError(f"no COPY puts {config} into the image")


def test_the_image_runs_the_console_script_as_a_non_root_user(
    dockerfile: list[tuple[str, str]], final_stage: list[tuple[str, str]]
) -> None:
    assert [args.split()[0] for keyword, args in dockerfile if keyword == "FROM"] == ["python:3.11-slim"] * 2
    (entrypoint,) = [exec_form(args) for keyword, args in final_stage if keyword == "ENTRYPOINT"]
    (script,) = entry_points(group="console_scripts", name=entrypoint[0])
    assert entrypoint == ["streamvision"] and script.value == "streamvision.__main__:main"
    keywords = [keyword for keyword, _ in final_stage]
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    created = " ".join(args for keyword, args in final_stage if keyword == "RUN")
    assert re.search(rf"useradd\b[^&]*\b{users[-1]}\b", created), "the USER is never created"
    # the package is installed with pip from a wheel built out of the build context, not from an index
    assert any(keyword == "RUN" and "pip wheel" in args for keyword, args in dockerfile)
    assert any(keyword == "RUN" and re.search(r"pip install\b.*\.whl", args) for keyword, args in final_stage)


def test_every_copied_path_is_in_the_build_context(
    dockerfile: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    copied = [copy_sources(args) for keyword, args in dockerfile if keyword == "COPY"]
    local = {source.rstrip("/") for sources, _, flags in copied if "from" not in flags for source in sources}
    for source in local:
        assert (ROOT / source).exists(), source
        assert not dockerignore_excludes(ignore_patterns, source), f".dockerignore drops {source}"
    # what the wheel build reads: the project, its readme, the package, and each folder forced into it
    assert {"pyproject.toml", "README.md", "streamvision", *_wheel_settings()["force-include"]} <= local


def test_the_wheel_ships_models_and_sample_clips(ignore_patterns: list[str]) -> None:
    """No network at run time: the manifest's model files and the sample clips reach the build
    context, and the wheel maps models/ into the package."""
    assert _wheel_settings()["force-include"]["models"] == "streamvision/_models"
    registry = ModelRegistry(ROOT / "models")
    files = [f"models/{registry.get(name).file}" for name in registry.names()]
    clips = [str(p.relative_to(ROOT)) for p in (ROOT / "streamvision" / "data").glob("*.mp4")]
    assert files and len(clips) >= 2
    for path in [*files, *clips, "models/manifest.yaml", "streamvision/sinks/preview_page.html"]:
        assert (ROOT / path).is_file(), path
        assert not dockerignore_excludes(ignore_patterns, path), f".dockerignore drops {path}"
    left_out = (".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", "streamvision/__pycache__/x.pyc")
    for dropped in left_out:
        assert dockerignore_excludes(ignore_patterns, dropped), dropped


def _wheel_settings() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(project["tool"]["hatch"]["build"]["targets"]["wheel"])


def test_the_default_command_runs_a_camera_config_that_ships_in_the_image(
    final_stage: list[tuple[str, str]], ignore_patterns: list[str]
) -> None:
    in_image, source = image_config_path(final_stage)
    assert source.is_file() and not dockerignore_excludes(ignore_patterns, str(source.relative_to(ROOT)))
    config = load_config(source)
    uri = config.source.uri
    assert uri.isdigit() or uri.startswith(("rtsp://", "rtsps://", "http://", "https://")), uri
    preview = config.outputs.preview
    # reachable through a published port only when bound to every interface of the container
    assert preview is not None and preview.host == "0.0.0.0"
    exposed = {
        int(port.split("/")[0])
        for keyword, args in final_stage
        if keyword == "EXPOSE"
        for port in args.split()
    }
    assert preview.port in exposed
    workdir = [args for keyword, args in final_stage if keyword == "WORKDIR"][-1]
    assert workdir == "/out" and in_image.startswith("/config/")


def test_compose_builds_the_dockerfile_and_runs_the_camera_config(
    compose: dict[str, Any], final_stage: list[tuple[str, str]]
) -> None:
    service = compose["services"]["streamvision"]
    context = (ROOT / service["build"]["context"]).resolve()
    assert (context / service["build"]["dockerfile"]).resolve() == ROOT / "Dockerfile"
    command = [interpolate(word) for word in service["command"]]
    in_image, _ = image_config_path(final_stage)
    assert command == ["run", "--config", in_image]
    mounted = mounts(service["volumes"])
    config_folder = mounted[str(Path(in_image).parent)]
    config = load_config(config_folder / Path(in_image).name)
    assert mounted["/out"] == ROOT / "out"  # the output folder (ignored by git)
    assert config.outputs.preview is not None
    published = [str(p).rsplit(":", 1) for p in service["ports"]]
    assert any(int(container) == config.outputs.preview.port for _, container in published)
    health = " ".join(service["healthcheck"]["test"])
    assert f"127.0.0.1:{config.outputs.preview.port}/" in health
    assert interpolate(service["user"]) == "1000:1000"


def test_compose_mqtt_profile_matches_the_mqtt_config(compose: dict[str, Any]) -> None:
    broker = compose["services"]["mosquitto"]
    assert broker["profiles"] == ["mqtt"]
    conf = mounts(broker["volumes"])["/mosquitto/config/mosquitto.conf"]
    listener = re.search(r"^listener (\d+)$", conf.read_text(), re.MULTILINE)
    assert listener is not None
    config = load_config(DEPLOY / "config" / "camera-mqtt.yaml")
    assert config.events is not None
    (mqtt,) = [o for o in config.events.outputs if isinstance(o, MqttOutput)]
    assert (mqtt.host, mqtt.port) == ("mosquitto", int(listener.group(1)))
    assert _without_mqtt(config) == _without_mqtt(load_config(DEPLOY / "config" / "camera.yaml"))


def _without_mqtt(config: PipelineConfig) -> dict[str, Any]:
    dumped = config.model_dump(mode="json")
    dumped["events"]["outputs"] = [o for o in dumped["events"]["outputs"] if o["type"] != "mqtt"]
    return dumped


def test_compose_monitoring_profile_scrapes_the_preview_and_provisions_grafana(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    prometheus, grafana = services["prometheus"], services["grafana"]
    assert prometheus["profiles"] == grafana["profiles"] == ["monitoring"]
    scrape_file = mounts(prometheus["volumes"])["/etc/prometheus/prometheus.yml"]
    (job,) = yaml.safe_load(scrape_file.read_text())["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    preview = load_config(DEPLOY / "config" / "camera.yaml").outputs.preview
    assert (
        preview is not None and target == f"streamvision:{preview.port}" and job["metrics_path"] == "/metrics"
    )

    grafana_mounts = mounts(grafana["volumes"])
    provisioning = grafana_mounts["/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "streamvision.yaml").read_text())["providers"]
    folder = provider["options"]["path"]
    dashboards = [host for container, host in grafana_mounts.items() if container.startswith(folder + "/")]
    assert dashboards == [DEPLOY / "grafana" / "streamvision-dashboard.json"]
    assert json.loads(dashboards[0].read_text())["uid"] == "streamvision"
