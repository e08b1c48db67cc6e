"""Ways to look at a workflow without running it: the static graph and its renderers."""

from ._graph import Graph, GraphBlock, GraphEdge, GraphNode, to_dot, to_json, to_mermaid

__all__ = ["Graph", "GraphBlock", "GraphEdge", "GraphNode", "to_dot", "to_json", "to_mermaid"]
