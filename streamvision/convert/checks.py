"""Checks and clean-ups on a converted ``onnx.ModelProto``.

tf2onnx exits successfully even when it leaves a TensorFlow op it cannot map in the graph; ONNX
Runtime then refuses the file much later. :func:`check_converted` finds such ops right away.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from streamvision.convert import _deps
from streamvision.errors import ConversionError

STANDARD_DOMAINS = ("", "ai.onnx")


def unconverted_ops(model: Any) -> list[str]:
    """``domain::op`` of every node that is not a standard ONNX operator at the model's opset."""
    onnx = _deps.onnx()
    opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), None)
    bad: set[str] = set()
    for node in _all_nodes(model.graph):
        known = node.domain in STANDARD_DOMAINS and (
            onnx.defs.has(node.op_type) if opset is None else onnx.defs.has(node.op_type, opset)
        )
        if not known:
            bad.add(f"{node.domain or 'ai.onnx'}::{node.op_type}")
    return sorted(bad)


def check_converted(model: Any) -> None:
    """Rejects graphs with ops tf2onnx left unconverted, then runs the ONNX checker.

    Raises:
        ConversionError: a node is not a standard ONNX op, or the graph is malformed.
    """
    onnx = _deps.onnx()
    bad = unconverted_ops(model)
    if bad:
        opset = next((o.version for o in model.opset_import if o.domain in STANDARD_DOMAINS), "?")
        raise ConversionError(
            f"the converted graph has ops that are not ONNX at opset {opset}: {', '.join(bad)} "
            "(left unconverted by tf2onnx although it reported success, or needing a higher --opset)"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ConversionError(f"the converted graph is not valid ONNX: {exc}") from exc


def order_outputs(model: Any, names: Sequence[str]) -> None:
    """Reorders ``model.graph.output`` to ``names``.

    Raises:
        ConversionError: a name is not an output of the graph.
    """
    by_name = {o.name: o for o in model.graph.output}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise ConversionError(f"the ONNX outputs {list(by_name)} lack {missing}")
    ordered = [by_name[n] for n in names]
    del model.graph.output[:]
    model.graph.output.extend(ordered)


def canonical_names(model: Any) -> None:
    """Renumbers tf2onnx's ``name__N`` suffixes and ``unk__N`` dimensions in graph order, and sorts
    initializers by first use.

    tf2onnx numbers generated names from a process-wide counter, so the same source gives different
    bytes from run to run (or after another conversion in the same process); after this, rebuilds
    are byte-identical. Top-level graph only.
    """
    g = model.graph
    g.doc_string = re.sub(r"__inference_(\w+?)_\d+", r"__inference_\1", g.doc_string)
    nums: dict[str, int] = {}

    def fix(name: str) -> str:
        return re.sub(r"__(\d+)", lambda m: f"__{nums.setdefault(m.group(1), len(nums))}", name)

    for n in g.node:
        n.name = fix(n.name)
        for names in (n.input, n.output):
            new = [fix(x) for x in names]
            del names[:]
            names.extend(new)
    for coll in (g.initializer, g.value_info, g.input, g.output):
        for t in coll:
            t.name = fix(t.name)
    first: dict[str, int] = {}
    for x in (x for n in g.node for x in n.input):
        first.setdefault(x, len(first))
    initializers = sorted(g.initializer, key=lambda t: (first.get(t.name, len(first)), t.name))
    del g.initializer[:]
    g.initializer.extend(initializers)
    value_info = sorted(g.value_info, key=lambda t: t.name)
    del g.value_info[:]
    g.value_info.extend(value_info)
    symbols: dict[str, str] = {}
    for t in (*g.input, *g.output, *g.value_info):
        for dim in t.type.tensor_type.shape.dim:
            if re.fullmatch(r"unk__\d+", dim.dim_param):
                dim.dim_param = symbols.setdefault(dim.dim_param, f"unk__{len(symbols)}")


def _all_nodes(graph: Any) -> list[Any]:
    """Nodes of ``graph`` and of every subgraph (If / Loop bodies)."""
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.g.node:
                nodes.extend(_all_nodes(attr.g))
            for sub in attr.graphs:
                nodes.extend(_all_nodes(sub))
    return nodes
