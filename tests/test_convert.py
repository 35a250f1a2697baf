"""Conversion of tiny Keras, SavedModel, TFLite and TF.js models built here, with real parity checks."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tensorflow as tf  # after conftest, which sets the environment TensorFlow reads

from streamvision.convert import ConvertOptions, convert_file
from streamvision.convert.tflite import TRANSPOSE_CONV_BIAS, interpreter
from streamvision.errors import ConversionError

pytestmark = pytest.mark.convert
keras = tf.keras


def _cnn(seed: int = 0, channels: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inp = keras.Input((24, 24, channels), name="image")
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(4, activation="softmax", name="scores")(x)
    return keras.Model(inp, out)


def _ort(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_files_convert_with_parity_under_1e_4(tmp_path: Path, suffix: str) -> None:
    model = _cnn()
    src = tmp_path / f"cnn{suffix}"
    model.save(src)
    result = convert_file(src, tmp_path / "cnn.onnx")
    assert result.kind == "keras" and result.parity is not None
    assert result.parity.max_abs < 1e-4 and result.parity.samples == 3
    assert result.parity.ms_source > 0 and result.parity.ms_onnx > 0
    x = np.random.default_rng(1).uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)
    np.testing.assert_allclose(_ort(tmp_path / "cnn.onnx", x), model(x).numpy(), atol=1e-5)


def test_nchw_input_and_a_real_image(tmp_path: Path, astronaut: Path) -> None:
    model = _cnn()
    model.save(tmp_path / "cnn.keras")
    options = ConvertOptions(nchw=True, image=astronaut)
    result = convert_file(tmp_path / "cnn.keras", tmp_path / "cnn.onnx", options)
    assert result.parity is not None and result.parity.samples == 4 and result.parity.max_abs < 1e-4
    x = np.random.default_rng(2).uniform(-1, 1, (1, 24, 24, 3)).astype(np.float32)
    got = _ort(tmp_path / "cnn.onnx", np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(got, model(x).numpy(), atol=1e-5)


def test_saved_model_folder(tmp_path: Path) -> None:
    class Affine(tf.Module):
        def __init__(self) -> None:
            self.w = tf.Variable(np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.nn.tanh(x @ self.w), "z": tf.reduce_sum(x, axis=1)}

    module = Affine()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.__call__})
    result = convert_file(tmp_path / "sm", tmp_path / "sm.onnx")
    assert result.kind == "saved_model" and sorted(result.output_names) == ["y", "z"]
    assert result.parity is not None and result.parity.max_abs < 1e-5


def _tflite(model: keras.Model, sparse: bool = False) -> bytes:
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if sparse:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter.convert()


def test_tflite_file(tmp_path: Path) -> None:
    (tmp_path / "cnn.tflite").write_bytes(_tflite(_cnn()))
    result = convert_file(tmp_path / "cnn.tflite", tmp_path / "cnn.onnx")
    assert result.kind == "tflite" and result.runtime == "tflite" and result.notes == []
    assert result.parity is not None and result.parity.max_abs < 1e-4


def test_sparse_tflite_is_densified(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 8))
    x = keras.layers.Flatten()(keras.layers.Conv2D(32, 3, padding="same")(inp))
    model = keras.Model(inp, keras.layers.Dense(64)(x))
    rng = np.random.default_rng(0)
    model.set_weights([w * (rng.random(w.shape) > 0.9) if w.ndim > 1 else w for w in model.get_weights()])
    (tmp_path / "sparse.tflite").write_bytes(_tflite(model, sparse=True))
    interp = interpreter(tmp_path / "sparse.tflite", delegates=False)
    assert "DENSIFY" in {op["op_name"] for op in interp._get_ops_details()}
    result = convert_file(tmp_path / "sparse.tflite", tmp_path / "sparse.onnx")
    assert any("densified" in note for note in result.notes)
    assert result.parity is not None and result.parity.max_abs < 1e-4


def _with_mediapipe_transpose_conv(tflite: bytes) -> bytes:
    """Rewrites the TRANSPOSE_CONV of ``tflite`` as MediaPipe's custom op (input, weights, bias)."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(tflite, 0)
    graph = model.subgraphs[0]
    (op,) = [
        o
        for o in graph.operators
        if max(
            model.operatorCodes[o.opcodeIndex].builtinCode,
            model.operatorCodes[o.opcodeIndex].deprecatedBuiltinCode,
        )
        == schema.BuiltinOperator.TRANSPOSE_CONV
    ]
    weights, x = op.inputs[1], op.inputs[2]
    out_channels = graph.tensors[weights].shape[0]
    bias = schema.BufferT()
    bias.data = np.frombuffer(np.linspace(-0.5, 0.5, out_channels, dtype=np.float32).tobytes(), np.uint8)
    model.buffers.append(bias)
    bias_tensor = schema.TensorT()
    bias_tensor.shape, bias_tensor.type, bias_tensor.buffer, bias_tensor.name = (
        [out_channels],
        schema.TensorType.FLOAT32,
        len(model.buffers) - 1,
        b"deconv_bias",
    )
    graph.tensors.append(bias_tensor)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = TRANSPOSE_CONV_BIAS.encode()
    model.operatorCodes.append(code)
    op.opcodeIndex = len(model.operatorCodes) - 1
    op.inputs = [x, weights, len(graph.tensors) - 1]
    op.builtinOptionsType, op.builtinOptions = 0, None
    op.customOptions = np.frombuffer(struct.pack("<3i", 1, 2, 2), np.uint8)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_mediapipe_transpose_conv_bias_becomes_conv_transpose(tmp_path: Path) -> None:
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 4), batch_size=1)
    model = keras.Model(
        inp, keras.layers.Conv2DTranspose(6, 4, strides=2, padding="same", use_bias=False)(inp)
    )
    src = tmp_path / "deconv.tflite"
    src.write_bytes(_with_mediapipe_transpose_conv(_tflite(model)))
    result = convert_file(src, tmp_path / "deconv.onnx")
    assert any(TRANSPOSE_CONV_BIAS in note for note in result.notes)
    assert result.parity is not None and result.parity.max_abs < 1e-4
    x = np.random.default_rng(3).uniform(-1, 1, (1, 8, 8, 4)).astype(np.float32)
    bias = np.linspace(-0.5, 0.5, 6, dtype=np.float32)
    np.testing.assert_allclose(_ort(tmp_path / "deconv.onnx", x), model(x).numpy() + bias, atol=1e-5)


def _tfjs_graph_model(folder: Path) -> Path:
    """A TF.js graph model, written by hand: _FusedConv2D, FusedDepthwiseConv2dNative and TopKV2,
    with the default attributes left out as the TF.js converter does."""
    rng = np.random.default_rng(0)
    weights = {
        "conv/w": rng.normal(size=(3, 3, 3, 4)).astype(np.float32),
        "conv/b": rng.normal(size=4).astype(np.float32),
        "dw/w": rng.normal(size=(3, 3, 4, 1)).astype(np.float32),
        "dw/b": rng.normal(size=4).astype(np.float32),
        "flat": np.array([1, -1], np.int32),
        "k": np.array(5, np.int32),
    }

    def const(name: str) -> dict[str, object]:
        dtype = "DT_INT32" if weights[name].dtype == np.int32 else "DT_FLOAT"
        return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}}}

    nodes = [
        {
            "name": "image",
            "op": "Placeholder",
            "attr": {
                "dtype": {"type": "DT_FLOAT"},
                "shape": {"shape": {"dim": [{"size": "1"}, {"size": "12"}, {"size": "12"}, {"size": "3"}]}},
            },
        },
        *[const(n) for n in weights],
        {
            "name": "conv",
            "op": "_FusedConv2D",
            "input": ["image", "conv/w", "conv/b"],
            "attr": {
                "T": {"type": "DT_FLOAT"},
                "num_args": {"i": "1"},
                "padding": {"s": "U0FNRQ=="},
                "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdQ=="]}},
            },
        },
        {
            "name": "dw",
            "op": "FusedDepthwiseConv2dNative",
            "input": ["conv", "dw/w", "dw/b"],
            "attr": {
                "T": {"type": "DT_FLOAT"},
                "num_args": {"i": "1"},
                "padding": {"s": "U0FNRQ=="},
                "strides": {"list": {"i": ["1", "1", "1", "1"]}},
                "fused_ops": {"list": {"s": ["Qmlhc0FkZA==", "UmVsdTY="]}},
            },
        },
        {"name": "flatten", "op": "Reshape", "input": ["dw", "flat"], "attr": {"T": {"type": "DT_FLOAT"}}},
        {"name": "top", "op": "TopKV2", "input": ["flatten", "k"], "attr": {"T": {"type": "DT_FLOAT"}}},
    ]
    manifest = [
        {"name": n, "shape": list(w.shape), "dtype": "int32" if w.dtype == np.int32 else "float32"}
        for n, w in weights.items()
    ]
    (folder / "group1-shard1of1.bin").write_bytes(b"".join(w.tobytes() for w in weights.values()))
    model = {
        "format": "graph-model",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1982}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"], "weights": manifest}],
        "signature": {
            "inputs": {
                "image:0": {
                    "name": "image:0",
                    "dtype": "DT_FLOAT",
                    "tensorShape": {"dim": [{"size": "1"}, {"size": "12"}, {"size": "12"}, {"size": "3"}]},
                }
            },
            "outputs": {"top:0": {"name": "top:0", "dtype": "DT_FLOAT"}},
        },
    }
    path = folder / "model.json"
    path.write_text(json.dumps(model))
    return path


def test_tfjs_graph_model_under_numpy_2_with_missing_attributes(tmp_path: Path) -> None:
    assert not hasattr(np, "product")  # the numpy 2 trap this converter works around
    result = convert_file(_tfjs_graph_model(tmp_path), tmp_path / "tfjs.onnx")
    assert result.kind == "tfjs" and any("default node attributes" in n for n in result.notes)
    assert result.parity is not None and result.parity.max_abs < 1e-4
    assert not hasattr(np, "product")


def test_an_op_tf2onnx_cannot_convert_is_an_error(tmp_path: Path) -> None:
    class Special(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([2, 3], tf.float32, name="x")])
        def __call__(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"y": tf.math.igamma(tf.abs(x) + 1.0, tf.abs(x) + 0.5)}

    module = Special()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": module.__call__})
    with pytest.raises(ConversionError, match=r"not ONNX at opset 17: ai\.onnx::Igamma"):
        convert_file(tmp_path / "sm", tmp_path / "sm.onnx")
    assert not (tmp_path / "sm.onnx").exists()


def test_parity_failure_reports_the_difference_and_writes_nothing(tmp_path: Path) -> None:
    _cnn().save(tmp_path / "cnn.keras")
    with pytest.raises(
        ConversionError, match=r"max abs difference [0-9.e-]+ \(output scores\) > tolerance 1e-12"
    ):
        convert_file(
            tmp_path / "cnn.keras", tmp_path / "cnn.onnx", ConvertOptions(tolerance=1e-12, samples=8)
        )
    assert not (tmp_path / "cnn.onnx").exists()


def test_unsupported_sources_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"\0")
    with pytest.raises(ConversionError, match="expected a Keras model"):
        convert_file(tmp_path / "model.pt", tmp_path / "o.onnx")
    (tmp_path / "broken.tflite").write_bytes(b"not a flatbuffer")
    with pytest.raises(ConversionError, match="TFLite"):
        convert_file(tmp_path / "broken.tflite", tmp_path / "o.onnx")
    (tmp_path / "layers.json").write_text(
        json.dumps({"modelTopology": {"keras_version": "2"}, "weightsManifest": []})
    )
    with pytest.raises(ConversionError, match="layers model"):
        convert_file(tmp_path / "layers.json", tmp_path / "o.onnx")


def test_cli_prints_parity_and_timing_and_exits_2_on_failure(tmp_path: Path) -> None:
    _cnn(channels=1).save(tmp_path / "grey.h5")
    cmd = [
        sys.executable,
        "-m",
        "streamvision",
        "convert",
        str(tmp_path / "grey.h5"),
        "-o",
        str(tmp_path / "g.onnx"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parity: max abs diff" in done.stdout and "ms per inference: tensorflow" in done.stdout
    assert (tmp_path / "g.onnx").is_file()
    failed = subprocess.run(
        [*cmd, "--tolerance", "0", "--image", str(tmp_path / "nope.png")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failed.returncode == 2
    assert failed.stderr.strip().splitlines()[-1].startswith("error: ")
