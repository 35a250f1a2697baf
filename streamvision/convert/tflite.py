"""TFLite files to ONNX with tf2onnx's TFLite frontend, repairing what it cannot handle alone.

- Sparse models (``DENSIFY`` ops, e.g. MediaPipe's full-range face detector) make tf2onnx fail
  (``cannot reshape array``). :func:`densify` runs the interpreter once, reads every dense weight
  the ``DENSIFY`` ops produce and writes a model with those weights stored densely. XNNPACK must
  be off for that: with it, the captured intermediate tensors are garbage.
- MediaPipe's custom ``Convolution2DTransposeBias`` is left unconverted by tf2onnx (which still
  succeeds); :func:`replace_transpose_conv_bias` swaps it for Transpose -> ConvTranspose -> Transpose.
"""

from __future__ import annotations

import struct
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from streamvision.convert import _deps
from streamvision.convert.frontend import Converted
from streamvision.convert.parity import TensorSpec
from streamvision.errors import ConversionError

TRANSPOSE_CONV_BIAS = "Convolution2DTransposeBias"
_PADDING_SAME, _PADDING_VALID = 1, 2


def _schema() -> Any:
    _deps.tensorflow()
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def _read_model(path: Path) -> Any:
    try:
        return _schema().ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    except Exception as exc:  # flatbuffers raises struct/index errors on non-TFLite bytes
        raise ConversionError(f"{path} is not a TFLite model: {exc}") from exc


def _op_name(model: Any, op: Any) -> str:
    schema = _schema()
    code = model.operatorCodes[op.opcodeIndex]
    builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
    if builtin == schema.BuiltinOperator.CUSTOM:
        return (
            (code.customCode or b"").decode() if isinstance(code.customCode, bytes) else str(code.customCode)
        )
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return str(names.get(builtin, builtin))


@contextmanager
def quiet_interpreter_notice() -> Iterator[None]:
    """Silences the notice every ``tf.lite.Interpreter`` gives that it moves to ai_edge_litert in TF
    2.20: until then it is the interpreter TensorFlow ships, and the notice only repeats itself."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        yield


def interpreter(path: Path, threads: int = 2, delegates: bool = True, preserve: bool = False) -> Any:
    """A TFLite interpreter with tensors allocated.

    Args:
        delegates: keep the default delegates (XNNPACK), as deployed; off to read intermediate tensors.
        preserve: keep every intermediate tensor readable after ``invoke``.

    Raises:
        ConversionError: the interpreter rejects the file.
    """
    tf = _deps.tensorflow()
    resolver = tf.lite.experimental.OpResolverType
    try:
        with quiet_interpreter_notice():
            interp = tf.lite.Interpreter(
                model_path=str(path),
                num_threads=threads,
                experimental_op_resolver_type=resolver.AUTO
                if delegates
                else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=preserve,
            )
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ConversionError(f"the TFLite interpreter cannot load {path}: {exc}") from exc
    return interp


def densify(path: Path, out: Path) -> int:
    """Writes ``path`` to ``out`` with the weights of every ``DENSIFY`` op stored densely.

    Returns:
        How many ``DENSIFY`` ops were removed (0: ``out`` is not written).

    Raises:
        ConversionError: the file is not a TFLite model or the interpreter cannot run it.
    """
    import flatbuffers

    model = _read_model(path)
    graph = model.subgraphs[0]
    densify_ops = [op for op in graph.operators if _op_name(model, op) == "DENSIFY"]
    if not densify_ops:
        return 0
    interp = interpreter(path, delegates=False, preserve=True)
    for detail in interp.get_input_details():
        interp.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interp.invoke()
    schema = _schema()
    for op in densify_ops:
        index = op.outputs[0]
        dense = np.ascontiguousarray(interp.get_tensor(index))
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(dense.tobytes(), np.uint8)
        model.buffers.append(buffer)
        dense_tensor = graph.tensors[index]
        dense_tensor.buffer = len(model.buffers) - 1
        # The sparse input stays in the tensor table, where tf2onnx would still try (and fail) to
        # read it: make it an unused copy of the dense weights.
        sparse_tensor = graph.tensors[op.inputs[0]]
        sparse_tensor.sparsity = None
        sparse_tensor.buffer = dense_tensor.buffer
        sparse_tensor.shape = dense_tensor.shape
        sparse_tensor.type = dense_tensor.type
        graph.operators.remove(op)
    builder = flatbuffers.Builder(1 << 20)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    out.write_bytes(bytes(builder.Output()))
    return len(densify_ops)


def transpose_conv_params(path: Path) -> dict[str, tuple[str, int, int]]:
    """(padding, stride_w, stride_h) of each ``Convolution2DTransposeBias``, keyed by output name.

    MediaPipe stores them as a raw ``TfLiteTransposeConvParams`` struct (three int32); anything
    shorter falls back to MediaPipe's default (SAME, stride 2).
    """
    model = _read_model(path)
    graph = model.subgraphs[0]
    params = {}
    for op in graph.operators:
        if _op_name(model, op) != TRANSPOSE_CONV_BIAS:
            continue
        raw = bytes(np.asarray(op.customOptions, np.uint8)) if op.customOptions is not None else b""
        padding, stride_w, stride_h = (
            struct.unpack("<3i", raw[:12]) if len(raw) >= 12 else (_PADDING_SAME, 2, 2)
        )
        name = graph.tensors[op.outputs[0]].name
        params[name.decode() if isinstance(name, bytes) else name] = (
            "VALID" if padding == _PADDING_VALID else "SAME",
            stride_w,
            stride_h,
        )
    return params


def replace_transpose_conv_bias(model: Any, params: dict[str, tuple[str, int, int]]) -> int:
    """Replaces every unconverted ``Convolution2DTransposeBias`` node by standard ONNX ops.

    The node takes NHWC input, OHWI weights and a bias; it becomes Transpose(NCHW) ->
    ConvTranspose (IOHW weights, TFLite's SAME padding) -> Transpose(NHWC).

    Returns:
        How many nodes were replaced.

    Raises:
        ConversionError: the weights are not a constant of the graph.
    """
    _deps.onnx()
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    replaced = 0
    for position, node in reversed(list(enumerate(graph.node))):
        if not node.op_type.endswith(TRANSPOSE_CONV_BIAS):
            continue
        x, w_name, b_name = node.input[:3]
        if w_name not in inits:
            raise ConversionError(
                f"{TRANSPOSE_CONV_BIAS} node {node.name}: weights {w_name} are not constant"
            )
        weights = numpy_helper.to_array(inits[w_name])  # OHWI
        padding, stride_w, stride_h = params.get(node.output[0], ("SAME", 2, 2))
        kh, kw = weights.shape[1:3]
        pads = [0, 0, 0, 0]
        if padding == "SAME":
            total_h, total_w = max(kh - stride_h, 0), max(kw - stride_w, 0)
            pads = [total_h // 2, total_w // 2, total_h - total_h // 2, total_w - total_w // 2]
        iohw = f"{w_name}__iohw"
        graph.initializer.append(
            numpy_helper.from_array(np.ascontiguousarray(weights.transpose(3, 0, 1, 2)), iohw)
        )
        base = node.name or node.output[0]
        new_nodes = [
            helper.make_node("Transpose", [x], [f"{base}__nchw"], perm=[0, 3, 1, 2], name=f"{base}__to_nchw"),
            helper.make_node(
                "ConvTranspose",
                [f"{base}__nchw", iohw, b_name],
                [f"{base}__deconv"],
                name=f"{base}__deconv",
                kernel_shape=[kh, kw],
                strides=[stride_h, stride_w],
                pads=pads,
            ),
            helper.make_node(
                "Transpose", [f"{base}__deconv"], [node.output[0]], perm=[0, 2, 3, 1], name=f"{base}__to_nhwc"
            ),
        ]
        del graph.node[position]
        for offset, new in enumerate(new_nodes):
            graph.node.insert(position + offset, new)
        replaced += 1
    if replaced:
        still_used = {i for n in graph.node for i in n.input}
        unused = [t for t in graph.initializer if t.name not in still_used]
        for t in unused:
            graph.initializer.remove(t)
    return replaced


def tflite_reference(path: Path, threads: int = 2) -> tuple[Any, list[TensorSpec]]:
    """The interpreter as deployed (default delegates) as a runner, and its input specs."""
    interp = interpreter(path, threads=threads)
    inputs = interp.get_input_details()
    outputs = interp.get_output_details()
    specs = [
        TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name) for d in inputs
    ]

    def run(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        for detail, array in zip(inputs, arrays, strict=True):
            interp.set_tensor(detail["index"], array)
        interp.invoke()
        return {d["name"]: interp.get_tensor(d["index"]).copy() for d in outputs}

    return run, specs


def convert_tflite(path: Path, opset: int, nchw: bool = False) -> Converted:
    """Converts a .tflite file, densifying sparse weights and replacing MediaPipe's custom op.

    Raises:
        ConversionError: the file is not TFLite, the interpreter or tf2onnx fails on it.
    """
    tf2onnx = _deps.tf2onnx()
    reference, specs = tflite_reference(path)
    notes = []
    with tempfile.TemporaryDirectory(prefix="streamvision-tflite-") as tmp:
        source = path
        dense = Path(tmp) / "dense.tflite"
        removed = densify(path, dense)
        if removed:
            notes.append(f"densified {removed} sparse weight tensors")
            source = dense
        nchw_names = [s.name for s in specs if len(s.shape) == 4] if nchw else None
        try:
            with quiet_interpreter_notice():  # tf2onnx reads the file with a tf.lite.Interpreter
                model, _ = tf2onnx.convert.from_tflite(str(source), opset=opset, inputs_as_nchw=nchw_names)
        except Exception as exc:  # tf2onnx raises bare Exceptions and ValueErrors from deep inside
            raise ConversionError(f"tf2onnx cannot convert {path.name}: {exc}") from exc
    replaced = replace_transpose_conv_bias(model, transpose_conv_params(path))
    if replaced:
        notes.append(f"replaced {replaced} {TRANSPOSE_CONV_BIAS} by ConvTranspose")
    return Converted(model, specs, reference, kind="tflite", runtime="tflite", notes=notes)
