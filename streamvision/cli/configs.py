"""``streamvision configs``: the ready pipeline configs that ship with streamvision, listed, printed or
copied out to be edited."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from streamvision.cli.errors import reported_errors
from streamvision.errors import ConfigError

configs_app = typer.Typer(no_args_is_help=True, help="List, print or copy the ready pipeline configs.")


def ready_configs() -> dict[str, Path]:
    """Name (file stem) -> file of every ready config."""
    from streamvision.bundled import bundled_dir

    return {path.stem: path for path in sorted(bundled_dir("configs").glob("*.yaml"))}


def ready_config(name: str) -> Path:
    """The file of the ready config ``name`` (``objects`` or ``objects.yaml``).

    Raises:
        ConfigError: there is no such config.
    """
    found = ready_configs()
    stem = name.removesuffix(".yaml")
    if stem not in found:
        raise ConfigError(f"no ready config {name!r}: the configs are {', '.join(found)}")
    return found[stem]


def _summary(path: Path) -> str:
    """The first comment line of a config: what it runs."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


@configs_app.command("list")
def list_configs() -> None:
    """One line per ready config: its name and what it runs."""
    with reported_errors():
        for name, path in ready_configs().items():
            typer.echo(f"{name:<20} {_summary(path)}")


@configs_app.command("show")
def show_config(
    name: Annotated[str, typer.Argument(help="A name from `streamvision configs list`.")],
) -> None:
    """Prints a ready config."""
    with reported_errors():
        typer.echo(ready_config(name).read_text(), nl=False)


@configs_app.command("copy")
def copy_config(
    name: Annotated[str, typer.Argument(help="A name from `streamvision configs list`.")],
    dest: Annotated[
        Path | None, typer.Argument(help="File or folder to write (default: NAME.yaml here).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a file that exists.")] = False,
) -> None:
    """Copies a ready config out to be edited, then run with `streamvision run -c FILE`."""
    with reported_errors():
        source = ready_config(name)
        target = dest if dest is not None else Path(source.name)
        if target.is_dir():
            target = target / source.name
        if target.exists() and not force:
            raise ConfigError(f"{target} exists: give another name, or --force to replace it")
        shutil.copyfile(source, target)
        typer.echo(f"wrote {target}; run it with: streamvision run -c {target}")
