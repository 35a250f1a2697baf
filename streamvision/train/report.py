"""The training report: ``report.json`` (everything) and ``report.md`` (for people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamvision.reports import write_json


def write_reports(report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Writes ``report.json`` and ``report.md`` into ``out_dir``; returns their paths.

    Raises:
        SinkError: the JSON report cannot be written.
        OSError: the Markdown report cannot be written.
    """
    json_path, md_path = out_dir / "report.json", out_dir / "report.md"
    write_json(json_path, report)
    md_path.write_text(markdown(report))
    return json_path, md_path


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: data, model, training, test metrics, confusion matrix, export."""
    data, model, training, test, export = (
        report["data"],
        report["model"],
        report["training"],
        report["test"],
        report["export"],
    )
    lines = [
        f"# {report['name']}: {model['architecture']} on {data['name']}",
        "",
        "## Data",
        "",
        f"- {data['images']} images, {len(data['classes'])} classes, {data['size']}x{data['size']} "
        f"{data['color']}, split (stratified, seed {data['seed']}): train {data['split']['train']}, "
        f"validation {data['split']['val']}, test {data['split']['test']}",
        f"- augmentation: {data['augmentation']}",
        "",
        "## Model",
        "",
        f"- {model['architecture']}, {model['parameters']:,} parameters"
        + (", BatchNormalization" if model.get("batch_norm") else ""),
        f"- initial weights: {model['weights']}",
        "",
        "## Training",
        "",
        f"- {training['epochs_run']} of {training['epochs']} epochs"
        + (" (stopped early)" if training["stopped_early"] else "")
        + f", best epoch {training['best_epoch']}, {training['seconds']:.1f} s on the CPU",
        f"- Adam (learning rate {training['learning_rate']}), batch {training['batch_size']}, "
        "categorical cross-entropy; curves: `curves.png`; TensorBoard logs: `logs/`",
        "",
        "## Test split",
        "",
        f"- accuracy **{test['accuracy']:.4f}**, macro precision {test['macro']['precision']:.4f}, "
        f"macro recall {test['macro']['recall']:.4f}, macro F1 **{test['macro']['f1']:.4f}** "
        f"({test['samples']} images)",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for name, row in test["per_class"].items():
        lines.append(
            f"| {name} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} | {row['support']} |"
        )
    classes = list(test["per_class"])
    lines += [
        "",
        "Confusion matrix (rows: true, columns: predicted; also `confusion_matrix.png`):",
        "",
        "| | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for name, row in zip(classes, test["confusion_matrix"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Export",
        "",
        f"- Keras: `{export['keras']}`; ONNX: `{export['onnx']}` (opset {export['opset']})",
        f"- parity Keras vs ONNX Runtime: max abs difference {export['parity_max_abs']:.3g} over "
        f"{export['parity_samples']} input batches (tolerance {export['parity_tolerance']:g})",
        f"- ONNX test accuracy {export['onnx_test_accuracy']:.4f}; ms per image batch: Keras "
        f"{export['ms_keras']:.2f}, ONNX Runtime {export['ms_onnx']:.2f}",
        f"- manifest: `{export['manifest']}`"
        + (f"; registered in `{export['registered']}`" if export.get("registered") else ""),
        f"- run it: `streamvision run --config {export['pipeline']} --events -`",
        "",
    ]
    return "\n".join(lines)
