"""``streamvision convert``: one source model to ONNX, checked against the source."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamvision.cli.errors import reported_errors
from streamvision.convert.parity import DEFAULT_TOLERANCE

_RANGES = ("-1..1", "0..1", "0..255")


def convert(
    src: Annotated[
        Path, typer.Argument(help="Keras .keras/.h5, SavedModel folder, .tflite or TF.js model.json.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="The .onnx file to write.")],
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Compare source and ONNX outputs, and time both.")
    ] = True,
    image: Annotated[
        Path | None, typer.Option("--image", help="A photo to add to the random parity inputs.")
    ] = None,
    image_range: Annotated[
        str,
        typer.Option("--image-range", help="Pixel scaling of --image for float inputs: -1..1, 0..1, 0..255."),
    ] = "-1..1",
    nchw: Annotated[
        bool, typer.Option("--nchw", help="Make the ONNX model take channels-first images.")
    ] = False,
    opset: Annotated[int, typer.Option("--opset", min=13, max=21, help="ONNX opset.")] = 17,
    tolerance: Annotated[
        float, typer.Option("--tolerance", min=0.0, help="Largest absolute difference accepted.")
    ] = DEFAULT_TOLERANCE,
) -> None:
    """Convert a Keras, SavedModel, TFLite or TF.js model to ONNX; verify parity and speed."""
    with reported_errors():
        from streamvision.convert.core import ConvertOptions, convert_file
        from streamvision.errors import ConfigError

        if image_range not in _RANGES:
            raise ConfigError(f"--image-range must be one of {', '.join(_RANGES)}, not {image_range!r}")
        options = ConvertOptions(
            opset=opset,
            nchw=nchw,
            verify=verify,
            tolerance=tolerance,
            image=image,
            image_range=image_range,  # type: ignore[arg-type]  # checked against _RANGES above
        )
        result = convert_file(src, output, options)
        typer.echo(f"converted {src} ({result.kind}) -> {output} ({len(result.onnx_bytes) / 1e6:.2f} MB)")
        for note in result.notes:
            typer.echo(f"  repaired: {note}")
        typer.echo(f"  inputs: {', '.join(result.input_names)}; outputs: {', '.join(result.output_names)}")
        if result.parity is None:
            typer.echo("  parity: not checked (--no-verify)")
            return
        p = result.parity
        typer.echo(
            f"  parity: max abs diff {p.max_abs:.3g} over {p.samples} inputs (tolerance {p.tolerance:g})"
        )
        typer.echo(f"  ms per inference: {result.runtime} {p.ms_source:.2f}, onnxruntime {p.ms_onnx:.2f}")
