"""``streamvision models``: list, describe and verify the models in the manifest."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamvision.cli.errors import reported_errors

if TYPE_CHECKING:
    from streamvision.runtime.manifest import InputSpec, ModelRegistry

models_app = typer.Typer(no_args_is_help=True, help="List, describe and verify the ONNX model zoo.")

ModelsDir = Annotated[
    Path | None, typer.Option("--models-dir", help="Folder with manifest.yaml (default: the bundled models).")
]


def _registry(models_dir: Path | None) -> ModelRegistry:
    from streamvision.runtime.manifest import ModelRegistry

    return ModelRegistry(models_dir)


def _input_shape(spec: InputSpec) -> tuple[int, ...]:
    """The input tensor's shape at the manifest size, batch 1."""
    width, height = spec.size
    channels = 1 if spec.color == "GRAY" else 3
    return (1, channels, height, width) if spec.layout == "NCHW" else (1, height, width, channels)


@models_app.command("list")
def list_models(models_dir: ModelsDir = None) -> None:
    """One line per model: task, input, file size, speed, parity and license."""
    with reported_errors():
        from rich.console import Console
        from rich.table import Table

        registry = _registry(models_dir)
        table = Table(title=f"models in {registry.models_dir}")
        for column in ("name", "task", "input", "size MB", "ms ORT", "parity", "license"):
            table.add_column(column, justify="right" if column in ("size MB", "ms ORT", "parity") else "left")
        for name in registry.names():
            spec = registry.get(name)
            path = registry.models_dir / spec.file
            shape = "x".join(str(d) for d in _input_shape(spec.input))
            size = f"{path.stat().st_size / 1e6:.2f}" if path.is_file() else "missing"
            ms = spec.conversion.get("ms_per_inference", {})
            parity = spec.conversion.get("parity_max_abs")
            table.add_row(
                name,
                spec.task,
                f"{shape}{'+' if spec.input.variable_size else ''} {spec.input.color} {spec.input.dtype}",
                size,
                f"{ms['onnxruntime']:.2f}" if isinstance(ms, dict) and "onnxruntime" in ms else "-",
                f"{parity:.2g}" if isinstance(parity, (int, float)) else "-",
                spec.license,
            )
        Console(width=160).print(table)


@models_app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="Model name, as in `models list`.")],
    models_dir: ModelsDir = None,
) -> None:
    """Everything the manifest says about one model, and whether its file is present."""
    with reported_errors():
        import yaml

        registry = _registry(models_dir)
        spec = registry.get(name)
        path = registry.models_dir / spec.file
        typer.echo(
            f"{name}: {path} ({f'{path.stat().st_size / 1e6:.2f} MB' if path.is_file() else 'MISSING'})"
        )
        typer.echo(
            yaml.safe_dump(
                spec.model_dump(mode="json"), sort_keys=False, width=110, default_flow_style=None
            ).rstrip()
        )


@models_app.command("verify")
def verify(
    names: Annotated[list[str] | None, typer.Argument(help="Models to check (default: all).")] = None,
    models_dir: ModelsDir = None,
) -> None:
    """Check each model's sha256, load it in ONNX Runtime and run it once; exit 2 naming any failure."""
    with reported_errors():
        import numpy as np

        from streamvision.errors import ModelError, StreamvisionError
        from streamvision.runtime.session import OnnxModel

        registry = _registry(models_dir)
        failures = []
        for name in names or registry.names():
            try:
                spec = registry.get(name)
                path = registry.verify(name)
                model = OnnxModel(path, threads=1)
                x = np.zeros(_input_shape(spec.input), spec.input.dtype)
                start = time.perf_counter()
                try:
                    outputs = model.run({spec.input.name: x})
                except Exception as exc:  # onnxruntime raises untyped errors for bad inputs
                    raise ModelError(f"{path} does not run on a {x.shape} {x.dtype} input: {exc}") from exc
                ms = (time.perf_counter() - start) * 1e3
                if sorted(model.output_names) != sorted(spec.outputs):
                    raise ModelError(
                        f"{path} outputs {model.output_names}, manifest says {list(spec.outputs)}"
                    )
                typer.echo(f"ok      {name}: sha256 matches, {len(outputs)} outputs, first run {ms:.1f} ms")
            except StreamvisionError as exc:
                failures.append(name)
                typer.echo(f"FAILED  {name}: {exc}")
        if failures:
            raise ModelError(f"{len(failures)} model(s) failed verification: {', '.join(failures)}")
