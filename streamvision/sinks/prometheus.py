"""Prometheus metrics for one pipeline, in a registry of its own (no global state)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streamvision.frame import Detections, Frame

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class PrometheusExport:
    """The figures of one run in the Prometheus text format.

    End-to-end latency is a histogram observed per frame; detections are counted per stage and
    label; FPS, frame counts, drops, source errors, reconnects and per-step times are read from
    ``stats`` (the pipeline summary) when scraped.
    """

    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry()
        self._latency = Histogram(
            "streamvision_latency_seconds",
            "Capture to output, per frame.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._detections = Counter(
            "streamvision_detections",
            "Objects found, by stage and label.",
            ["stage", "label"],
            registry=self.registry,
        )
        self.registry.register(_SummaryCollector(stats))

    def observe_frame(self, frame: Frame) -> None:
        self._latency.observe(time.monotonic() - frame.capture_time)
        for stage, result in frame.results.items():
            if isinstance(result, Detections):
                for label in result.class_name:
                    self._detections.labels(stage=stage, label=str(label)).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _SummaryCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        stats = self._stats()
        source = str(stats.get("source", ""))
        for name, key, doc in (
            ("streamvision_frames_in", "frames_in", "Frames read from the source."),
            ("streamvision_frames_out", "frames_out", "Frames that went through every stage and output."),
            (
                "streamvision_dropped_frames",
                "dropped",
                "Frames a live source delivered that processing skipped.",
            ),
            ("streamvision_source_errors", "source_errors", "Frames that could not be decoded or read."),
            ("streamvision_reconnects", "reconnects", "Times the source was reopened."),
        ):
            counter = CounterMetricFamily(name, doc, labels=["source"])
            counter.add_metric([source], float(stats.get(key) or 0))
            yield counter
        fps = GaugeMetricFamily(
            "streamvision_fps", "Frames per second over the run.", labels=["source", "direction"]
        )
        fps.add_metric([source, "in"], float(stats.get("fps_in") or 0))
        fps.add_metric([source, "out"], float(stats.get("fps_out") or 0))
        yield fps
        step = GaugeMetricFamily(
            "streamvision_step_milliseconds",
            "Time per frame of each stage and step.",
            labels=["step", "quantile"],
        )
        for kind in ("stage_ms", "step_ms"):
            for name, ms in stats.get(kind, {}).items():
                for quantile in ("p50", "p95"):
                    if ms.get(quantile) is not None:
                        step.add_metric([name, quantile.replace("p", "0.")], float(ms[quantile]))
        yield step
        yield from _event_metrics(stats, source)


def _event_metrics(stats: dict[str, Any], source: str) -> Iterator[Metric]:
    """Events by type, and per event output its backlog, drops and failures (``events`` config only)."""
    if "events_by_type" not in stats:
        return
    events = CounterMetricFamily(
        "streamvision_events", "Events the rules emitted, by type.", labels=["source", "type"]
    )
    for type_, n in stats["events_by_type"].items():
        events.add_metric([source, type_], float(n))
    yield events
    outputs = stats.get("event_outputs", {})
    backlog = GaugeMetricFamily(
        "streamvision_event_output_backlog",
        "Items waiting for an event output (queue or spool).",
        labels=["output"],
    )
    peak = GaugeMetricFamily(
        "streamvision_event_output_backlog_peak", "The largest backlog of an event output.", labels=["output"]
    )
    dropped = CounterMetricFamily(
        "streamvision_event_output_dropped",
        "Items an event output dropped (backlog full).",
        labels=["output"],
    )
    failed = CounterMetricFamily(
        "streamvision_event_output_failed", "Items an event output failed to deliver.", labels=["output"]
    )
    for name, figures in outputs.items():
        backlog.add_metric([name], float(figures.get("backlog", 0)))
        peak.add_metric([name], float(figures.get("backlog_peak", 0)))
        dropped.add_metric([name], float(figures.get("dropped", 0)))
        failed.add_metric([name], float(figures.get("failed", 0) + figures.get("rejected", 0)))
    yield from (backlog, peak, dropped, failed)
