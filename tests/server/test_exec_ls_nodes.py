"""`raftcron exec ls` names every node an execution's attempts ran on, not only the last."""

from __future__ import annotations

from raftcron.cmd_job import _nodes


def test_a_retried_execution_lists_each_node_in_order() -> None:
    assert _nodes({"nodes_tried": ["n2", "n3"], "node_name": "n3"}) == "n2 > n3"
    assert _nodes({"nodes_tried": ["n2"], "node_name": "n4"}) == "n2 > n4"  # the live attempt's lease holder


def test_finished_or_unplaced_executions() -> None:
    assert _nodes({"nodes_tried": [], "node_name": "n1"}) == "n1"  # a node's own result, no replicated trail
    assert _nodes({"node_name": None}) == "-"
