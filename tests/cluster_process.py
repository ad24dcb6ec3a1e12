"""A two-node Ray cluster in a process of its own, for tests/test_cluster.py.

Run as ``python tests/cluster_process.py READY_FILE``: starts a head and a
worker node with ONE CPU each (``ray.cluster_utils.Cluster``), writes
``{"address": ..., "node_ids": [...]}`` to READY_FILE once both nodes are up
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


def main(ready_file: str) -> None:
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(timeout=60)
        nodes = sorted(n.node_id for n in cluster.list_all_nodes())
        with open(ready_file + ".tmp", "w") as f:
            json.dump({"address": cluster.address, "node_ids": nodes}, f)
        os.replace(ready_file + ".tmp", ready_file)  # the test never reads half a file
        sys.stdin.read()  # EOF: the test closed the pipe, or its process is gone
    finally:
        cluster.shutdown()  # this cluster's processes only


if __name__ == "__main__":
    main(sys.argv[1])
