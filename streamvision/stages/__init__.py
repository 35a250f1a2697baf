"""Stages, registered by name: ``type`` in a pipeline config picks one."""

from __future__ import annotations

from streamvision.errors import ConfigError
from streamvision.stages.base import Stage, StageConfig, StageContext, StageFactory
from streamvision.stages.classify import Classifier, ClassifyConfig
from streamvision.stages.faces import FaceDetectionConfig, build_face_detector
from streamvision.stages.faces.recognize import RecognizeConfig, Recognizer
from streamvision.stages.objects import ObjectDetectionConfig, ObjectDetector
from streamvision.stages.pose import PoseConfig, PoseEstimator
from streamvision.stages.segment import SegmentConfig, Segmenter
from streamvision.stages.track import TrackConfig, Tracker
from streamvision.stages.zones import ZoneCounter, ZonesConfig

STAGES: dict[str, tuple[type[StageConfig], StageFactory]] = {
    "face_detection": (FaceDetectionConfig, build_face_detector),
    "object_detection": (ObjectDetectionConfig, ObjectDetector),
    "track": (TrackConfig, Tracker),
    "zones": (ZonesConfig, ZoneCounter),
    "classify": (ClassifyConfig, Classifier),
    "segment": (SegmentConfig, Segmenter),
    "recognize": (RecognizeConfig, Recognizer),
    "pose": (PoseConfig, PoseEstimator),
}

__all__ = ["STAGES", "Stage", "StageConfig", "StageContext", "build_stage", "stage_config_class"]


def stage_config_class(type_name: str) -> type[StageConfig]:
    """The config class registered for ``type_name``.

    Raises:
        ConfigError: unknown stage type; the message lists the valid ones.
    """
    try:
        return STAGES[type_name][0]
    except KeyError:
        valid = ", ".join(sorted(STAGES))
        raise ConfigError(f"unknown stage type {type_name!r}; valid: {valid}") from None


def build_stage(config: StageConfig, context: StageContext) -> Stage:
    """Constructs the stage that ``config`` describes."""
    return STAGES[config.type][1](config, context)
