"""The errors streamvision reports to a user as one line with exit code 2."""


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
