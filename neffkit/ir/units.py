"""Marks that say which parts of a model are compiled units, kept in the model itself.

The passes write them and the backends read them, so they live below both: a host loop is a
top-level ``Loop`` whose name is keyed in the model's ``metadata_props``
(``neffkit.host_loop/<Loop node name>`` -> ``"step"``): the Loop runs on the host and its
body is the compiled step. Every ONNX tool keeps and ignores ``metadata_props``. A partition
of ``partition-unroll`` is a subgraph whose ``doc_string`` is ``PARTITION_MARK steps=A-B``, and
the ``If`` that runs it or stops carries ``GATE_MARK``.
"""

from __future__ import annotations

from neffkit.ir.core import Graph, Node

#: ``metadata_props`` key prefix: ``neffkit.host_loop/<Loop node name>`` -> ``"step"``.
HOST_LOOP_KEY = "neffkit.host_loop/"
#: The value of a host-loop entry: the Loop's body is the compiled step unit.
STEP_UNIT = "step"
#: ``doc_string`` prefix of a graph that is one compiled unit: a partition's straight-line
#: steps, ``neffkit:partition steps=A-B`` (``partition-unroll`` writes it).
PARTITION_MARK = "neffkit:partition"
#: ``doc_string`` of an ``If`` that stays on the host: it runs the next partition or stops.
GATE_MARK = "neffkit:partition-gate"


def host_loop_key(node: Node) -> str:
    """The ``metadata_props`` key that marks ``node`` (a named Loop) as a host loop."""
    return HOST_LOOP_KEY + node.name


def host_loops(graph: Graph) -> list[Node]:
    """The top-level Loop nodes of ``graph``'s model marked as host loops, in order."""
    root = graph.root
    props = root.meta.metadata_props
    return [
        n
        for n in root
        if n.op_type == "Loop"
        and n.domain == ""
        and n.name
        and props.get(host_loop_key(n)) == STEP_UNIT
    ]
