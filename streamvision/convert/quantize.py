"""INT8 detectors: ONNX Runtime static quantization (QDQ) calibrated on frames of the user's footage,
with the parts that break kept in float, found by measurement, and the result judged against the
float model on held-out frames.

The steps, each measured:

1. **Graph.** A ``-inf`` Pad before a MaxPool (tf2onnx's SAME pooling) is folded into the MaxPool:
   exact, and without it calibration sees an infinite range, so every later activation collapses to
   one value and the INT8 model detects nothing. ONNX Runtime's quantization pre-processing then
   optimises the graph. Any tensor whose calibrated range is still not finite keeps its nodes in
   float.
2. **Calibration** (MinMax) on the first frames of the clip, preprocessed as the detector stage does
   (letterbox and normalisation from the manifest's input spec).
3. **Sensitivity.** Each node group (a Conv with its Pad and activation; each other op type) is
   quantized alone and the relative error of the model outputs measured on the calibration frames.
4. **Search.** Starting from everything in INT8, the most sensitive groups go back to float one at a
   time until the boxes on the calibration frames reach the recall bar against the float model.
   Those frames flatter the model (its ranges were fitted to them), which is why the verdict is not
   taken on them.
5. **Verdict** on held-out frames (never calibrated on, never searched on) of the clip and of any
   other clips: recall and precision of the INT8 boxes against the float boxes at IoU 0.5, through
   the object-detection stage itself, and the speed of both models in the same run.

Needs ``onnx`` and an ONNX Runtime whose ``quantize_static`` takes ``calibration_cache_path``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streamvision.convert import _deps
from streamvision.convert.agreement import (
    Agreement,
    ClipPlan,
    count_frames,
    judge,
    plan_clip,
    read_frames,
    spread,
    stage_detector,
    time_models,
)
from streamvision.convert.int8_bench import (
    Bench,
    BenchSettings,
    Progress,
    SearchStep,
    ort_quantization,
    prepare_graph,
)
from streamvision.convert.int8_graph import node_groups, nodes_touching
from streamvision.decoders.detection import DETECTION_DECODERS
from streamvision.errors import ConversionError
from streamvision.runtime.manifest import ModelSpec
from streamvision.runtime.preprocess import letterbox

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize and how to judge the result.

    Attributes:
        frames: calibration frames, from the first part of the clip.
        eval_frames: held-out frames of the clip (after the calibration frames) to judge on; as many
            from each of ``extra_clips``.
        min_recall: the bar: recall of the INT8 boxes against the float boxes on every evaluation set.
        score_threshold: boxes below this score count on neither side (the stage's default).
        iou: overlap at which an INT8 box matches a float box of its class.
        search: keep the most sensitive node groups in float until the calibration frames reach
            ``min_recall``; without it only what measurement rules out (non-finite ranges) stays float.
        naive: quantize every node of the graph as given, with no rewrite and nothing kept in float
            (the trap, for comparison).
        threads: ONNX Runtime intra-op threads for timing and evaluation.
        timing_runs: timed runs of each model (median).
        extra_clips: other clips to judge on (files or ``sample:NAME``).

    Raises:
        ValueError: a count below 1, or a threshold, IoU or recall outside its range.
    """

    frames: int = 32
    eval_frames: int = 64
    min_recall: float = 0.95
    score_threshold: float = 0.3
    iou: float = 0.5
    search: bool = True
    naive: bool = False
    threads: int = 2
    timing_runs: int = 30
    extra_clips: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.frames < 1 or self.eval_frames < 1 or self.timing_runs < 1 or self.threads < 1:
            raise ValueError("frames, eval_frames, timing_runs and threads must be >= 1")
        if not 0 < self.score_threshold < 1 or not 0 < self.iou <= 1 or not 0 <= self.min_recall <= 1:
            raise ValueError("need 0 < score_threshold < 1, 0 < iou <= 1 and 0 <= min_recall <= 1")

    @property
    def thresholds(self) -> tuple[float, ...]:
        """Score thresholds the report covers: the stage's and two stricter ones."""
        return tuple(sorted({self.score_threshold, *(t for t in (0.4, 0.5) if t > self.score_threshold)}))


@dataclass(frozen=True)
class QuantizeResult:
    """The INT8 model written and everything measured about it."""

    output: Path
    clip: ClipPlan
    notes: list[str]
    broken: list[str]
    """Nodes kept in float because their calibrated range is not finite."""
    kept_float: list[str]
    """Node groups the search put back in float, most sensitive first."""
    float_nodes: list[str]
    sensitivity: dict[str, float]
    steps: list[SearchStep]
    evaluations: dict[str, dict[float, Agreement]]
    """Evaluation set -> score threshold -> agreement."""
    ms_float: float
    ms_int8: float
    options: QuantizeOptions
    nodes: int
    """Nodes of the graph that was quantized."""

    @property
    def recall(self) -> float:
        """The lowest recall of any evaluation set at the stage's score threshold."""
        return min(sets[self.options.score_threshold].recall for sets in self.evaluations.values())

    @property
    def precision(self) -> float:
        """The lowest precision of any evaluation set at the stage's score threshold."""
        return min(sets[self.options.score_threshold].precision for sets in self.evaluations.values())

    @property
    def speedup(self) -> float:
        return self.ms_float / self.ms_int8

    @property
    def passed(self) -> bool:
        return self.recall >= self.options.min_recall


def quantize_detector(
    model: Path,
    spec: ModelSpec,
    clip: str,
    output: Path,
    options: QuantizeOptions | None = None,
    progress: Progress | None = None,
) -> QuantizeResult:
    """Writes an INT8 version of the detector ``model`` to ``output`` and measures it.

    Args:
        model: the float ONNX detector.
        spec: its manifest entry (input spec, decoder, outputs, labels).
        clip: footage to calibrate on and judge with: a video file or ``sample:NAME``.
        output: the .onnx file to write.
        options: see :class:`QuantizeOptions`.
        progress: called with one line per stage of the work.

    Raises:
        ConversionError: the model is not a detector, onnx or a suitable ONNX Runtime is missing, the
            float model finds nothing to agree on, or the output cannot be written.
        SourceError: a clip is missing, unreadable or too short.
        ModelError: ONNX Runtime cannot load the float model.
    """
    options = options or QuantizeOptions()
    say = progress or log.info
    if spec.decoder not in DETECTION_DECODERS:
        raise ConversionError(
            f"--int8 judges a model by its boxes: {spec.decoder!r} is not a detection decoder "
            f"({', '.join(sorted(DETECTION_DECODERS))})"
        )
    _deps.onnx()
    quantization = ort_quantization()
    plan = plan_clip(clip, options.frames, options.eval_frames)
    extra_plans = [_plan_extra(name, options.eval_frames) for name in options.extra_clips]
    images = [letterbox(f, spec.input.size)[0] for f in read_frames(plan.path, plan.calibration)]
    say(f"calibrating on {len(images)} frames of {plan.path.name} ({plan.total} frames)")
    with tempfile.TemporaryDirectory(prefix="streamvision-int8-") as tmp:
        folder = Path(tmp)
        settings = BenchSettings(options.score_threshold, options.iou, options.threads)
        bench = Bench(folder, spec, model, images, settings, quantization)
        source, graph, notes = prepare_graph(model, folder, options.naive, quantization)
        for note in notes:
            say(f"  {note}")
        infinite = bench.calibrate(source)
        broken = [] if options.naive else nodes_touching(graph, infinite)
        if broken:
            say(f"  kept in float, calibrated range not finite: {', '.join(broken)}")
        groups = node_groups(graph, skip=broken)
        steps = [bench.step(source, "", broken)]
        say(f"  all INT8: recall {steps[0].recall:.3f} on the calibration frames")
        sensitivity: dict[str, float] = {}
        kept: list[str] = []
        if options.search and not options.naive and steps[0].recall < options.min_recall:
            sensitivity = bench.sensitivity(source, groups, say)
            for name in sorted(sensitivity, key=sensitivity.__getitem__, reverse=True):
                kept.append(name)
                steps.append(bench.step(source, name, _nodes(broken, groups, kept)))
                say(f"  + {name} in float: recall {steps[-1].recall:.3f} on the calibration frames")
                if steps[-1].recall >= options.min_recall:
                    break
        float_nodes = _nodes(broken, groups, kept)
        final = folder / "int8.onnx"
        bench.quantize(source, final, exclude=float_nodes)
        _copy(final, output)
        nodes = len(graph.graph.node)
        say(f"wrote {output}: {len(float_nodes)} of {nodes} nodes in float; judging on held-out frames")
        low = min(options.thresholds)
        reference = stage_detector(model, spec, low, options.threads, folder / "float")
        candidate = stage_detector(output, spec, low, options.threads, folder / "int8")
        sets = [(f"{plan.path.name} (held-out frames)", plan.path, plan.evaluation), *extra_plans]
        evaluations: dict[str, dict[float, Agreement]] = {}
        for name, path, indices in sets:
            key = name if name not in evaluations else str(path)  # two clips of the same name
            evaluations[key] = judge(reference, candidate, path, indices, options.thresholds, options.iou)
    ms_float, ms_int8 = time_models(model, output, spec, images[0], options.threads, options.timing_runs)
    return QuantizeResult(
        output=output,
        clip=plan,
        notes=notes,
        broken=broken,
        kept_float=kept,
        float_nodes=float_nodes,
        sensitivity=sensitivity,
        steps=steps,
        evaluations=evaluations,
        ms_float=ms_float,
        ms_int8=ms_int8,
        options=options,
        nodes=nodes,
    )


def _plan_extra(clip: str, count: int) -> tuple[str, Path, tuple[int, ...]]:
    from streamvision.samples import resolve

    path = Path(resolve(clip))
    return path.name, path, spread(count_frames(path), count)


def _copy(source: Path, target: Path) -> None:
    """Raises ConversionError when ``target`` cannot be written."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except OSError as exc:
        raise ConversionError(f"cannot write {target}: {exc.strerror or exc}") from None


def _nodes(broken: list[str], groups: dict[str, list[str]], kept: Sequence[str]) -> list[str]:
    return [*broken, *(node for name in kept for node in groups[name])]
