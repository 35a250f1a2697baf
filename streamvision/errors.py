"""The errors streamvision reports to a user as one line with exit code 2."""

from streamvision.redact import redact_url


class StreamvisionError(Exception):
    """Base class: a problem with the user's input (file, stream, config, model), not a bug."""


class ConfigError(StreamvisionError):
    """A pipeline config or command-line option is invalid."""


class SourceError(StreamvisionError):
    """A source cannot be opened or read: missing file, corrupt video, no images, no camera."""


class ModelError(StreamvisionError):
    """A model is unknown, missing, fails its checksum or cannot be loaded."""


class SinkError(StreamvisionError):
    """An output cannot be written."""


class ConversionError(StreamvisionError):
    """A model cannot be converted to ONNX, or the converted model disagrees with its source."""


class TrainingError(StreamvisionError):
    """A training run cannot start or finish: bad data, a missing extra, an export that fails."""


class ClusterError(StreamvisionError):
    """Ray is missing or a cluster cannot be reached or used (``cluster run``, ``batch``)."""


def describe(exc: BaseException) -> str:
    """One line for a failure reported as data (a batch file, a fleet source): a streamvision error's
    message, or the type and message of anything else. URL credentials are removed."""
    text = str(exc) if isinstance(exc, StreamvisionError) else f"{type(exc).__name__}: {exc}"
    lines = text.strip().splitlines()
    return redact_url(lines[0] if lines else type(exc).__name__)
