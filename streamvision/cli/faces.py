"""``streamvision faces``: enroll people for face recognition."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamvision.cli.errors import reported_errors

faces_app = typer.Typer(no_args_is_help=True, help="Face recognition galleries.")


@faces_app.command("enroll")
def enroll_command(
    folder: Annotated[
        Path, typer.Argument(help="Photos: one subfolder per person, or files named after them.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Gallery file to write (.npz).")],
    detector: Annotated[
        str, typer.Option("--detector", help="Face detector: blazeface_short, blazeface_full or mtcnn.")
    ] = "blazeface_short",
    model: Annotated[str, typer.Option("--model", help="Descriptor model from the manifest.")] = "faceres",
    crop_scale: Annotated[
        float,
        typer.Option("--crop-scale", min=1.0, max=3.0, help="Growth of each face box before describing."),
    ] = 1.4,
) -> None:
    """Build a gallery from the largest face in each photo; photos without a face are listed and left out."""
    with reported_errors():
        from streamvision.stages.faces.enroll import enroll

        result = enroll(folder, detector=detector, model=model, crop_scale=crop_scale)
        result.gallery.save(output)
        for path, why in result.skipped:
            typer.echo(f"skipped {path}: {why}", err=True)
        people = result.gallery.people
        typer.echo(
            f"{output}: {len(people)} people from {len(result.gallery.names)} photos ({', '.join(people)})"
        )
