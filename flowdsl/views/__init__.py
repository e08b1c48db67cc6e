"""Ways to look at workflows and runs: the static graph and its renderers, the run viewer."""

from ._graph import Graph, GraphBlock, GraphEdge, GraphNode, to_dot, to_json, to_mermaid
from ._shape import graph_from_shape
from ._viewer import VIEWER_CSS, node_states, recorded_graph, render_run, run_page

__all__ = [
    "VIEWER_CSS",
    "Graph",
    "GraphBlock",
    "GraphEdge",
    "GraphNode",
    "graph_from_shape",
    "node_states",
    "recorded_graph",
    "render_run",
    "run_page",
    "to_dot",
    "to_json",
    "to_mermaid",
]
