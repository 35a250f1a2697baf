"""Sinks: where finished frames go (video file, window, events)."""

from streamvision.sinks.base import Sink

__all__ = ["Sink"]
