"""A Ray cluster (two nodes by default) in a process of its own, for tests/test_cluster.py.

Run as ``python tests/cluster_process.py READY_FILE [NODES_JSON]``: starts a
head and a worker node with ONE CPU and no GPU each (``ray.cluster_utils.Cluster``;
NODES_JSON, a list of per-node arguments such as ``[{"num_cpus": 1, "num_gpus": 1}]``,
replaces them: the first is the head; a GPU given there is a Ray resource only,
whether or not the machine has one), writes
``{"address": ..., "node_ids": [...]}`` to READY_FILE once every node is up
(a file, not stdout: Ray's own processes inherit stdout and may write to it),
then holds the cluster until its stdin closes (the test is done, or died) and
shuts it down.

Why a process of its own: starting a Ray node in a process installs Ray's
SIGTERM handler there (it kills "its" processes and exits) and registers atexit
hooks; ``Cluster.shutdown()`` undoes neither. Inside the pytest process that
handler outlived the test and turned a later test's SIGTERM into a failure.
"""
from __future__ import annotations

import json
import os
import sys


# GPUs set to 0: Ray would otherwise count this machine's GPUs on every node.
DEFAULT_NODES = [{"num_cpus": 1, "num_gpus": 0}, {"num_cpus": 1, "num_gpus": 0}]


def main(ready_file: str, nodes: list[dict] = DEFAULT_NODES) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**nodes[0], "include_dashboard": False})
    try:
        for node in nodes[1:]:
            cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=60)
        node_ids = sorted(n.node_id for n in cluster.list_all_nodes())
        with open(ready_file + ".tmp", "w") as f:
            json.dump({"address": cluster.address, "node_ids": node_ids}, f)
        os.replace(ready_file + ".tmp", ready_file)  # the test never reads half a file
        sys.stdin.read()  # EOF: the test closed the pipe, or its process is gone
    finally:
        cluster.shutdown()  # this cluster's processes only


if __name__ == "__main__":
    main(sys.argv[1], *([json.loads(sys.argv[2])] if len(sys.argv) > 2 else []))
