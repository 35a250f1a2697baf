"""Graph work before INT8 quantization: exact rewrites that make a graph quantizable, and the node
groups that the search keeps in float one at a time.

Pure ``onnx`` protobuf manipulation; nothing here runs a model.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})
"""Ops whose weights and activations carry the quantization error; each heads a group."""
ACTIVATION_OPS = frozenset({"Relu", "LeakyRelu", "Clip", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh"})
"""Ops that follow a compute op and join its group."""


def fold_infinite_pads(model: Any) -> list[str]:
    """Folds each ``Pad`` whose constant is ``-inf`` into the ``MaxPool`` it feeds, in place.

    tf2onnx writes TensorFlow's SAME max pooling as Pad(-inf) then MaxPool. ONNX MaxPool's own
    ``pads`` never win a max, so the fold is exact; it matters for INT8 because calibration sees the
    ``-inf`` border as the tensor's minimum, the scale becomes infinite and every activation after it
    quantizes to the same value (NanoDet then detects nothing at all).

    Args:
        model: an ``onnx.ModelProto``; changed in place.

    Returns:
        one line per fold, naming the nodes.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    consumers = _consumers(graph.node)
    folded: list[str] = []
    for pad in list(graph.node):
        if pad.op_type != "Pad" or len(pad.input) < 3 or len(pad.output) != 1:
            continue
        value, pads = constants.get(pad.input[2]), constants.get(pad.input[1])
        users = consumers.get(pad.output[0], [])
        if value is None or pads is None or not np.all(np.isneginf(value)) or len(users) != 1:
            continue
        pool = users[0]
        attributes = {a.name: helper.get_attribute_value(a) for a in pool.attribute}
        rank = len(pads) // 2
        # only spatial padding on an unpadded MaxPool folds; batch or channel padding changes the shape
        if (
            pool.op_type != "MaxPool"
            or any(attributes.get("pads", []))
            or attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET")
            or any(pads[:2])
            or any(pads[rank : rank + 2])
            or any(p < 0 for p in pads)
        ):
            continue
        spatial = [int(p) for p in [*pads[2:rank], *pads[rank + 2 :]]]
        for index in reversed(range(len(pool.attribute))):
            if pool.attribute[index].name in ("pads", "auto_pad"):
                del pool.attribute[index]
        pool.attribute.append(helper.make_attribute("pads", spatial))
        pool.input[0] = pad.input[0]
        graph.node.remove(pad)
        folded.append(f"folded {pad.name} (Pad with -inf) into {pool.name} (MaxPool pads {spatial})")
    if folded:
        used = {name for node in graph.node for name in node.input}
        for init in [i for i in graph.initializer if i.name not in used]:
            graph.initializer.remove(init)
    return folded


def nodes_touching(model: Any, tensors: Iterable[str]) -> list[str]:
    """Names of the nodes that produce or consume any of ``tensors``, in graph order."""
    wanted = set(tensors)
    return [
        node.name
        for node in model.graph.node
        if wanted.intersection(node.input) or wanted.intersection(node.output)
    ]


def node_groups(model: Any, skip: Iterable[str] = ()) -> dict[str, list[str]]:
    """Splits the graph into the groups the INT8 search keeps in float together.

    Each compute op (Conv, MatMul, ...) forms a group with the Pad that only feeds it and the
    activation that only follows it, named after the compute node; every other op type forms one
    group named ``all <OpType>``. Nodes in ``skip`` (already kept in float) are left out.

    Raises:
        ValueError: a node has no name (the quantizer excludes nodes by name).
    """
    skipped = set(skip)
    nodes = [n for n in model.graph.node if n.name not in skipped]
    unnamed = [n.op_type for n in nodes if not n.name]
    if unnamed:
        raise ValueError(f"{len(unnamed)} nodes have no name ({', '.join(sorted(set(unnamed)))})")
    consumers = _consumers(nodes)
    producers = {out: n for n in nodes for out in n.output}
    groups: dict[str, list[str]] = {}
    taken: set[str] = set()
    for node in nodes:
        if node.op_type not in COMPUTE_OPS:
            continue
        group = [node.name]
        before = producers.get(node.input[0])
        if before is not None and before.op_type == "Pad" and len(consumers[before.output[0]]) == 1:
            group.insert(0, before.name)
        after = consumers.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type in ACTIVATION_OPS:
            group.append(after[0].name)
        groups[node.name] = group
        taken.update(group)
    for node in nodes:
        if node.name not in taken:
            groups.setdefault(f"all {node.op_type}", []).append(node.name)
    return groups


def _consumers(nodes: Iterable[Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found
