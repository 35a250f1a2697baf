"""``streamvision convert MODEL.onnx --int8``: find the model's manifest entry, quantize, write the
JSON and Markdown reports, and register the INT8 model only when it clears the recall bar."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamvision.convert.int8_bench import Progress
from streamvision.convert.quantize import QuantizeOptions, QuantizeResult, quantize_detector
from streamvision.errors import ConversionError
from streamvision.runtime.manifest import MANIFEST_NAME, ModelRegistry, ModelSpec, sha256_of


@dataclass(frozen=True)
class Int8Run:
    """What ``--int8`` produced: the measurements, the reports and where the model was registered."""

    result: QuantizeResult
    source_name: str
    name: str
    json_report: Path
    markdown_report: Path
    manifest: Path | None


def find_entry(model: Path, models_dir: Path) -> tuple[str, ModelSpec]:
    """The manifest entry of ``model`` in ``models_dir``: the one whose file it is, else the one whose
    checksum it has.

    Raises:
        ConversionError: the model file or the manifest is missing, or no entry describes the model.
        ModelError: the manifest is invalid, or the model fails the checksum of its entry.
    """
    if not model.is_file():
        raise ConversionError(f"no such model file: {model}")
    if not (models_dir / MANIFEST_NAME).is_file():
        raise ConversionError(
            f"no {MANIFEST_NAME} in {models_dir}: --int8 needs {model.name}'s manifest entry (input "
            "size, layout, normalisation and decoder) to feed and judge it; pass --manifest DIR"
        )
    registry = ModelRegistry(models_dir)
    for name in registry.names():
        if (models_dir / registry.get(name).file).resolve() == model.resolve():
            registry.verify(name)
            return name, registry.get(name)
    digest = sha256_of(model)
    for name in registry.names():
        if registry.get(name).sha256 == digest:
            return name, registry.get(name)
    raise ConversionError(
        f"{model} has no entry in {models_dir / MANIFEST_NAME}: --int8 needs its input size, layout, "
        "normalisation and decoder; add an entry or pass --manifest DIR"
    )


def run_int8(
    model: Path,
    clip: str,
    output: Path | None,
    models_dir: Path | None,
    name: str | None,
    options: QuantizeOptions,
    progress: Progress | None = None,
) -> Int8Run:
    """Quantizes ``model``, writes ``OUT.report.json`` and ``OUT.report.md`` next to the output and,
    when the recall bar is met, adds the model to ``models_dir``'s manifest as ``name``.

    Args:
        model: a float ONNX detector with an entry in ``models_dir``'s manifest.
        clip: the footage to calibrate on and judge with.
        output: the INT8 .onnx to write; ``models_dir/NAME.onnx`` by default.
        models_dir: the manifest folder; ``model``'s own folder by default.
        name: the new entry's name; ``<source entry>_int8`` by default.
        options: see :class:`QuantizeOptions`.
        progress: called with one line per stage of the work.

    Raises:
        ConversionError: as :func:`find_entry` and :func:`quantize_detector`; a bad ``name``.
        SourceError: a clip is missing, unreadable or too short.
        ModelError: the manifest is invalid.
        TrainingError: the manifest cannot be written (it is shared with ``streamvision train``).
    """
    from streamvision.train.export import NAME_PATTERN, write_entry

    models_dir = models_dir or model.parent
    source_name, spec = find_entry(model, models_dir)
    name = name or f"{source_name}_int8"
    if not NAME_PATTERN.match(name):
        raise ConversionError(f"--name {name!r}: use letters, digits, '_', '.' and '-'")
    if name == source_name:
        raise ConversionError(f"--name {name!r} is the float model's own entry; pick another")
    output = output or models_dir / f"{name}.onnx"
    if output.resolve() == model.resolve():
        raise ConversionError(f"-o {output} would overwrite the float model")
    result = quantize_detector(model, spec, clip, output, options, progress)
    json_report, markdown_report = write_reports(result, model, source_name)
    manifest = None
    if result.passed:
        entry = manifest_entry(result, model, source_name, spec)
        manifest = write_entry(models_dir, name, entry, model_file=output)
    return Int8Run(result, source_name, name, json_report, markdown_report, manifest)


def report_data(result: QuantizeResult, model: Path, source_name: str) -> dict[str, Any]:
    """Everything measured, JSON-ready."""
    import onnxruntime

    options = result.options
    return {
        "model": str(result.output),
        "sha256": sha256_of(result.output),
        "source": {"name": source_name, "file": str(model), "sha256": sha256_of(model)},
        "quantizer": (
            f"onnxruntime {onnxruntime.__version__} quantize_static: QDQ, int8 per-channel weights, "
            "uint8 per-tensor activations, MinMax calibration"
        ),
        "calibration": {
            "clip": result.clip.path.name,
            "sha256": sha256_of(result.clip.path),
            "clip_frames": result.clip.total,
            "frames": list(result.clip.calibration),
        },
        "bar": {
            "min_recall": options.min_recall,
            "iou": options.iou,
            "score_threshold": options.score_threshold,
        },
        "recall": round(result.recall, 4),
        "precision": round(result.precision, 4),
        "passed": result.passed,
        "evaluation": {
            name: {f"{t:g}": a.as_dict() for t, a in by_threshold.items()}
            for name, by_threshold in result.evaluations.items()
        },
        "ms_per_inference": {"float": round(result.ms_float, 3), "int8": round(result.ms_int8, 3)},
        "speedup": round(result.speedup, 3),
        "timing": {"threads": options.threads, "runs": options.timing_runs, "statistic": "median"},
        "graph": {
            "nodes": result.nodes,
            "changes": result.notes,
            "float_for_infinite_range": result.broken,
            "float_by_search": result.kept_float,
            "float_nodes": result.float_nodes,
        },
        "search": [asdict(step) for step in result.steps],
        "sensitivity": {k: float(f"{v:.4g}") for k, v in result.sensitivity.items()},
    }


def write_reports(result: QuantizeResult, model: Path, source_name: str) -> tuple[Path, Path]:
    """Writes ``OUT.report.json`` and ``OUT.report.md`` next to the INT8 model.

    Raises:
        ConversionError: they cannot be written.
    """
    data = report_data(result, model, source_name)
    paths = result.output.with_suffix(".report.json"), result.output.with_suffix(".report.md")
    try:
        paths[0].write_text(json.dumps(data, indent=2) + "\n")
        paths[1].write_text(markdown(data))
    except OSError as exc:
        raise ConversionError(
            f"cannot write the report next to {result.output}: {exc.strerror or exc}"
        ) from None
    return paths


def markdown(data: dict[str, Any]) -> str:
    """The report as Markdown: verdict, agreement per evaluation set and threshold, speed, what stayed
    float and the search."""
    bar = data["bar"]
    verdict = "passes" if data["passed"] else "FAILS"
    ms = data["ms_per_inference"]
    lines = [
        f"# INT8 {Path(data['model']).name} from {data['source']['name']}",
        "",
        f"**{verdict}** the bar: recall {data['recall']:.3f} (lowest of the evaluation sets) against "
        f"--min-recall {bar['min_recall']:g}; precision {data['precision']:.3f}. Boxes scored >= "
        f"{bar['score_threshold']:g} on both sides, matched per class at IoU {bar['iou']:g}.",
        "",
        f"Speed: float {ms['float']:.2f} ms, INT8 {ms['int8']:.2f} ms per inference: "
        f"**{data['speedup']:.2f}x** (median of {data['timing']['runs']} alternating runs, "
        f"{data['timing']['threads']} threads, same process).",
        "",
        f"Calibrated on {len(data['calibration']['frames'])} frames of {data['calibration']['clip']} "
        f"({data['calibration']['clip_frames']} frames); {data['quantizer']}.",
        "",
        "| evaluation set | score >= | recall | precision | float boxes | INT8 boxes | frames |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, by_threshold in data["evaluation"].items():
        for threshold, a in by_threshold.items():
            lines.append(
                f"| {name} | {threshold} | {a['recall']:.3f} | {a['precision']:.3f} | {a['float_boxes']} "
                f"| {a['int8_boxes']} | {a['frames']} |"
            )
    graph = data["graph"]
    lines += ["", f"## Graph ({graph['nodes']} nodes, {len(graph['float_nodes'])} in float)", ""]
    lines += [f"- {change}" for change in graph["changes"]]
    if graph["float_for_infinite_range"]:
        lines.append(f"- float, calibrated range not finite: {', '.join(graph['float_for_infinite_range'])}")
    lines.append(f"- float by the search: {', '.join(graph['float_by_search']) or 'nothing'}")
    lines += [
        "",
        "## Search (recall on the calibration frames)",
        "",
        "| back to float | recall | precision |",
    ]
    lines.append("|---|---|---|")
    for step in data["search"]:
        lines.append(
            f"| {step['kept_float'] or '(all INT8)'} | {step['recall']:.3f} | {step['precision']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def manifest_entry(result: QuantizeResult, model: Path, source_name: str, spec: ModelSpec) -> dict[str, Any]:
    """The manifest entry of the INT8 model: the float entry's input, decoder, labels and origin, and
    a ``conversion`` block with the quantization, the calibration, the agreement and the speed."""
    data = report_data(result, model, source_name)
    entry = spec.model_dump(mode="json")
    entry.update(
        file=result.output.name,
        sha256=data["sha256"],
        conversion={
            "tool": data["quantizer"],
            "quantized_from": {"model": source_name, "sha256": data["source"]["sha256"]},
            "calibration": {
                "clip": data["calibration"]["clip"],
                "sha256": data["calibration"]["sha256"],
                "frames": len(result.clip.calibration),
            },
            "kept_float": [*result.broken, *result.kept_float],
            "agreement": {
                "recall": data["recall"],
                "precision": data["precision"],
                "iou": result.options.iou,
                "score_threshold": result.options.score_threshold,
                "sets": {
                    name: sets[f"{result.options.score_threshold:g}"]
                    for name, sets in data["evaluation"].items()
                },
            },
            "ms_per_inference": {
                "float": data["ms_per_inference"]["float"],
                "onnxruntime": data["ms_per_inference"]["int8"],
            },
            "speedup": data["speedup"],
        },
    )
    return entry
