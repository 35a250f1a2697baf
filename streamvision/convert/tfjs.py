"""TF.js graph models (model.json + weight shards) to ONNX, and TF.js graphs run in TensorFlow.

Stock tf2onnx 1.17 fails on TF.js graphs here in three ways, all repaired in this module:

- its weight reader calls ``np.product``, removed in numpy 2: it gets a numpy shim;
- TF.js drops node attributes that hold their default value, which TensorFlow 2.21 then refuses
  (``NodeDef missing attr 'TArgs'`` on ``_FusedConv2D``, ``KeyError: 'index_type'`` on ``TopKV2``):
  :func:`fill_default_attrs` restores them from the registered op definitions;
- it exposes no public TF.js entry point: :func:`convert_tfjs` goes through its common converter.

The TensorFlow reference for parity is the same graph imported as a GraphDef with its weights.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from streamvision.convert import _deps
from streamvision.convert.frontend import Converted
from streamvision.convert.parity import TensorSpec
from streamvision.errors import ConversionError

_RENAMED_OPS = {"FusedDepthwiseConv2dNative": "_FusedDepthwiseConv2dNative"}
_DTYPES = {
    "DT_FLOAT": "float32",
    "DT_INT32": "int32",
    "DT_UINT8": "uint8",
    "DT_INT64": "int64",
    "DT_BOOL": "bool",
}


def read_model_json(path: Path) -> dict[str, Any]:
    """The parsed model.json of a TF.js graph model.

    Raises:
        ConversionError: unreadable, not JSON, or a TF.js layers model rather than a graph model.
    """
    try:
        model = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConversionError(f"{path} is not a TF.js model.json: {exc}") from exc
    topology = model.get("modelTopology") if isinstance(model, dict) else None
    if not isinstance(topology, dict) or "weightsManifest" not in model:
        raise ConversionError(f"{path} is not a TF.js model.json (no modelTopology / weightsManifest)")
    if model.get("format", "graph-model") != "graph-model" or "keras_version" in topology:
        raise ConversionError(f"{path} is a TF.js layers model; only graph models convert")
    return cast(dict[str, Any], model)


def fill_default_attrs(model: dict[str, Any]) -> int:
    """Adds, in place, every attribute a node omits that its TensorFlow op definition requires.

    Attributes with a registered default get it; a type-list attribute without one (``TArgs``)
    gets the node's ``T`` once per input it types.

    Returns:
        How many attributes were added.
    """
    _deps.tensorflow()
    from google.protobuf.json_format import MessageToDict
    from tensorflow.python.framework import op_def_registry

    topology = model["modelTopology"]
    nodes = list(topology.get("node", []))
    for function in topology.get("library", {}).get("function", []):
        nodes.extend(function.get("nodeDef", []))
    added = 0
    for node in nodes:
        op_def = op_def_registry.get(_RENAMED_OPS.get(node["op"], node["op"]))
        if op_def is None:
            continue
        attrs = node.setdefault("attr", {})
        for attr in op_def.attr:
            if attr.name in attrs:
                continue
            if attr.HasField("default_value"):
                attrs[attr.name] = MessageToDict(attr.default_value)
                added += 1
            elif attr.type == "list(type)":
                count = _inputs_typed_by(op_def, attr.name, node, attrs)
                dtype = attrs.get("T", {}).get("type", "DT_FLOAT")
                attrs[attr.name] = {"list": {"type": [dtype] * count}} if count else {"list": {}}
                added += 1
    return added


def _inputs_typed_by(op_def: Any, attr_name: str, node: dict[str, Any], attrs: dict[str, Any]) -> int:
    """How many of ``node``'s data inputs belong to the argument typed by ``attr_name``."""
    data_inputs = [i for i in node.get("input", []) if not i.startswith("^")]
    others = 0
    for arg in op_def.input_arg:
        if arg.type_list_attr == attr_name:
            continue
        others += int(attrs.get(arg.number_attr, {}).get("i", 0)) if arg.number_attr else 1
    return max(len(data_inputs) - others, 0)


class _NumpyCompat(SimpleNamespace):
    """numpy as tf2onnx's TF.js reader expects it: with ``product`` (removed in numpy 2)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@contextlib.contextmanager
def _tf2onnx_numpy_shim() -> Iterator[None]:
    """Gives tf2onnx's TF.js module a numpy with ``product``, without touching numpy itself."""
    from tf2onnx import tfjs_utils

    original = tfjs_utils.np
    tfjs_utils.np = _NumpyCompat(product=np.prod)
    try:
        yield
    finally:
        tfjs_utils.np = original


def _signature(model: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """(input key -> tensor name, output key -> tensor name) from the model's signature."""
    signature = model.get("signature") or {}

    def names(part: str) -> dict[str, str]:
        return {k: _tensor(v["name"]) for k, v in (signature.get(part) or {}).items()}

    return names("inputs"), names("outputs")


def _tensor(name: str) -> str:
    return name if ":" in name else f"{name}:0"


def _input_specs(model: dict[str, Any]) -> list[TensorSpec]:
    signature = model.get("signature") or {}
    entries = list((signature.get("inputs") or {}).items())
    if not entries:
        entries = [
            (
                n["name"],
                {"dtype": n["attr"]["dtype"]["type"], "tensorShape": n["attr"].get("shape", {}).get("shape")},
            )
            for n in model["modelTopology"]["node"]
            if n["op"] == "Placeholder"
        ]
    specs = []
    for key, entry in entries:
        dims = (entry.get("tensorShape") or {}).get("dim", [])
        shape = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims)
        dtype = _DTYPES.get(entry.get("dtype", "DT_FLOAT"))
        if dtype is None:
            raise ConversionError(f"TF.js input {key} has unsupported dtype {entry.get('dtype')}")
        specs.append(TensorSpec(key.split(":")[0], shape, dtype))
    return specs


def _weights(model: dict[str, Any], folder: Path) -> dict[str, np.ndarray]:
    """Every weight of the model by name, read with tf2onnx's own decoder (quantisation included)."""
    from tf2onnx import tfjs_utils

    weights: dict[str, np.ndarray] = {}
    with _tf2onnx_numpy_shim():
        for group in model["weightsManifest"]:
            try:
                data = b"".join((folder / p).read_bytes() for p in group["paths"])
            except OSError as exc:
                raise ConversionError(f"missing TF.js weight shard: {exc}") from exc
            offset = 0
            for weight in group["weights"]:
                name, array, size = tfjs_utils.read_tfjs_weight(weight, data, offset)
                weights[name] = array
                offset += size
    return weights


def tfjs_reference(model: dict[str, Any], folder: Path, output_tensors: dict[str, str]) -> Any:
    """The TF.js graph imported into TensorFlow as a runner (outputs keyed as ``output_tensors``).

    Args:
        model: the model.json, with attributes already filled by :func:`fill_default_attrs`.
        folder: where its weight shards are.
        output_tensors: ONNX output name -> TensorFlow tensor name.

    Raises:
        ConversionError: TensorFlow refuses the graph.
    """
    tf = _deps.tensorflow()
    from google.protobuf.json_format import ParseDict

    weights = _weights(model, folder)
    graph_def = tf.compat.v1.GraphDef()
    topology = model["modelTopology"]
    for node in topology["node"]:
        node_def = ParseDict(node, tf.compat.v1.NodeDef(), ignore_unknown_fields=True)
        if node_def.op == "Const":
            dtype = tf.as_dtype(node_def.attr["dtype"].type)
            value = weights[node_def.name].astype(dtype.as_numpy_dtype)
            node_def.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
        if node_def.op == "FusedDepthwiseConv2dNative":
            graph_def.node.extend(_unfuse_depthwise(node_def))
        else:
            graph_def.node.append(node_def)
    if topology.get("library"):
        ParseDict(topology["library"], graph_def.library, ignore_unknown_fields=True)
    inputs, _ = _signature(model)
    input_tensors = list(inputs.values()) or [
        f"{n['name']}:0" for n in topology["node"] if n["op"] == "Placeholder"
    ]
    try:
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        pruned = wrapped.prune(
            [wrapped.graph.get_tensor_by_name(n) for n in input_tensors],
            {k: wrapped.graph.get_tensor_by_name(v) for k, v in output_tensors.items()},
        )
    except (ValueError, KeyError, tf.errors.OpError) as exc:
        raise ConversionError(f"TensorFlow cannot import the TF.js graph: {exc}") from exc

    def run(arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
        outputs = pruned(*[tf.constant(a) for a in arrays])
        return {k: v.numpy() for k, v in outputs.items()}

    return run


_ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6", "Elu": "Elu", "Sigmoid": "Sigmoid", "Tanh": "Tanh"}


def _unfuse_depthwise(fused: Any) -> list[Any]:
    """TF.js's ``FusedDepthwiseConv2dNative`` as plain TensorFlow ops.

    TensorFlow registers ``_FusedDepthwiseConv2dNative`` only for its graph optimiser: run
    directly, the CPU kernel produces no output. The last op keeps the fused node's name, so its
    consumers are unchanged.

    Raises:
        ConversionError: a fused op other than BiasAdd followed by a plain activation.
    """
    tf = _deps.tensorflow()
    fused_ops = [op.decode() for op in fused.attr["fused_ops"].list.s]
    if not fused_ops or fused_ops[0] != "BiasAdd" or any(op not in _ACTIVATIONS for op in fused_ops[1:]):
        raise ConversionError(f"{fused.name}: cannot run fused depthwise ops {fused_ops} in TensorFlow")
    data_inputs = [i for i in fused.input if not i.startswith("^")]
    dtype = fused.attr["T"]
    conv = tf.compat.v1.NodeDef(name=f"{fused.name}/_conv", op="DepthwiseConv2dNative", input=data_inputs[:2])
    for key in ("T", "strides", "padding", "dilations", "data_format"):
        if key in fused.attr:
            conv.attr[key].CopyFrom(fused.attr[key])
    steps = [(f"{fused.name}/_bias", "BiasAdd", [conv.name, data_inputs[2]])]
    for index, activation in enumerate(fused_ops[1:]):
        steps.append((f"{fused.name}/_act{index}", _ACTIVATIONS[activation], [steps[-1][0]]))
    nodes = [conv]
    for index, (name, op, inputs) in enumerate(steps):
        node = tf.compat.v1.NodeDef(name=fused.name if index == len(steps) - 1 else name, op=op, input=inputs)
        node.attr["T"].CopyFrom(dtype)
        if op == "BiasAdd" and "data_format" in fused.attr:
            node.attr["data_format"].CopyFrom(fused.attr["data_format"])
        nodes.append(node)
    if len(steps) > 1:
        nodes[-1].input[0] = nodes[-2].name
    return nodes


def convert_tfjs(path: Path, opset: int, nchw: bool = False) -> Converted:
    """Converts a TF.js graph model (``model.json`` beside its weight shards).

    Raises:
        ConversionError: not a TF.js graph model, a missing shard, or tf2onnx / TensorFlow fail.
    """
    tf2onnx = _deps.tf2onnx()
    model = read_model_json(path)
    patched = copy.deepcopy(model)
    added = fill_default_attrs(patched)
    specs = _input_specs(patched)
    notes = [f"restored {added} default node attributes"] if added else []
    with tempfile.TemporaryDirectory(prefix="streamvision-tfjs-") as tmp:
        patched_json = Path(tmp) / path.name
        patched_json.write_text(json.dumps(patched))
        for group in patched["weightsManifest"]:
            for shard in group["paths"]:
                target = (path.parent / shard).resolve()
                link = Path(tmp) / shard
                link.parent.mkdir(parents=True, exist_ok=True)
                if target.is_file():
                    os.symlink(target, link)
        nchw_names = [_tensor(s.name) for s in specs if len(s.shape) == 4] if nchw else None
        try:
            with _tf2onnx_numpy_shim():
                # tf2onnx has no public TF.js entry point; its CLI goes through this same call.
                onnx_model, _ = tf2onnx.convert._convert_common(
                    None, name=path.stem, opset=opset, tfjs_path=str(patched_json), inputs_as_nchw=nchw_names
                )
        except ConversionError:
            raise
        except Exception as exc:  # tf2onnx raises bare Exceptions and ValueErrors from deep inside
            raise ConversionError(f"tf2onnx cannot convert {path.name}: {exc}") from exc
    _, sig_outputs = _signature(patched)
    output_tensors = {o.name: sig_outputs.get(o.name, _tensor(o.name)) for o in onnx_model.graph.output}
    reference = tfjs_reference(patched, path.parent, output_tensors)
    return Converted(onnx_model, specs, reference, kind="tfjs", runtime="tensorflow", notes=notes)
