"""``streamvision convert``: one source model to ONNX, checked against the source."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from streamvision.convert.defaults import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from streamvision.convert.quantize import QuantizeOptions

_RANGES = ("-1..1", "0..1", "0..255")


def convert(
    src: Annotated[
        Path,
        typer.Argument(
            help="Keras .keras/.h5, SavedModel folder, .tflite, TF.js model.json (--int8: an ONNX detector)."
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="The .onnx file to write (--int8: DIR/NAME.onnx by default)."),
    ] = None,
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
    int8: Annotated[
        bool,
        typer.Option(
            "--int8",
            help="Quantize an ONNX detector to INT8 (needs --calibrate); register it only if it agrees.",
            rich_help_panel="INT8",
        ),
    ] = False,
    calibrate: Annotated[
        str | None,
        typer.Option(
            "--calibrate",
            metavar="CLIP",
            help="Your footage (video file or sample:NAME): first frames calibrate, later ones judge.",
            rich_help_panel="INT8",
        ),
    ] = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            metavar="DIR",
            help="Folder whose manifest.yaml describes MODEL and gets the INT8 entry (MODEL's folder).",
            rich_help_panel="INT8",
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Manifest name of the INT8 model (SOURCE_int8).", rich_help_panel="INT8"),
    ] = None,
    min_recall: Annotated[
        float,
        typer.Option(
            "--min-recall",
            min=0.0,
            max=1.0,
            help="Register only if the INT8 boxes find this share of the float boxes on every set.",
            rich_help_panel="INT8",
        ),
    ] = 0.95,
    frames: Annotated[
        int, typer.Option("--frames", min=1, max=1000, help="Calibration frames.", rich_help_panel="INT8")
    ] = 32,
    eval_frames: Annotated[
        int,
        typer.Option(
            "--eval-frames",
            min=1,
            max=10000,
            help="Held-out frames per evaluation clip.",
            rich_help_panel="INT8",
        ),
    ] = 64,
    eval_clip: Annotated[
        list[str] | None,
        typer.Option(
            "--eval-clip",
            metavar="CLIP",
            help="Another clip to judge on (repeatable).",
            rich_help_panel="INT8",
        ),
    ] = None,
    search: Annotated[
        bool,
        typer.Option(
            "--search/--no-search",
            help="Put the most sensitive node groups back in float until the calibration frames agree.",
            rich_help_panel="INT8",
        ),
    ] = True,
) -> None:
    """Convert a Keras, SavedModel, TFLite or TF.js model to ONNX; verify parity and speed. With
    --int8: quantize an ONNX detector, judged against the float model on your footage."""
    # imported here: the cli package imports this module, so importing it first (a doctest run over
    # streamvision/) would otherwise find the cli package half initialised
    from streamvision.cli.errors import reported_errors

    with reported_errors():
        from streamvision.errors import ConfigError

        if calibrate is not None and not int8:
            raise ConfigError("--calibrate goes with --int8")
        if int8:
            if calibrate is None:
                raise ConfigError("--int8 needs --calibrate CLIP: footage to calibrate on and judge with")
            from streamvision.convert.quantize import QuantizeOptions

            quantize_options = QuantizeOptions(
                frames=frames,
                eval_frames=eval_frames,
                min_recall=min_recall,
                search=search,
                extra_clips=tuple(eval_clip or ()),
            )
            _int8(src, calibrate, output, manifest, name, quantize_options)
            return
        if output is None:
            raise ConfigError("-o/--output is required: the .onnx file to write")
        from streamvision.convert.core import ConvertOptions, convert_file

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


def _int8(
    model: Path,
    clip: str,
    output: Path | None,
    manifest: Path | None,
    name: str | None,
    options: QuantizeOptions,
) -> None:
    """``--int8``: quantize, print the verdict, register or refuse.

    Raises:
        ConversionError: the model is below ``options.min_recall`` (after the report is written), or
            any error of :func:`~streamvision.convert.int8_report.run_int8`.
    """
    from streamvision.convert.int8_report import run_int8
    from streamvision.errors import ConversionError

    run = run_int8(model, clip, output, manifest, name, options, progress=typer.echo)
    result = run.result
    for set_name, by_threshold in result.evaluations.items():
        found = by_threshold[options.score_threshold]
        typer.echo(
            f"  {set_name}: recall {found.recall:.3f}, precision {found.precision:.3f} "
            f"({found.reference_boxes} float boxes, {found.frames} frames)"
        )
    typer.echo(
        f"  ms per inference: float {result.ms_float:.2f}, int8 {result.ms_int8:.2f} ({result.speedup:.2f}x)"
    )
    typer.echo(f"  report: {run.markdown_report}")
    if run.manifest is None:
        raise ConversionError(
            f"INT8 recall {result.recall:.3f} against the float model is below --min-recall "
            f"{options.min_recall:g}: "
            f"{run.name} not registered (model {result.output}, report {run.markdown_report})"
        )
    typer.echo(f"registered {run.name} in {run.manifest}")
