"""The node provider of the simulated cluster (tests/sim_cluster.py), loaded by the head's
autoscaler (``provider: {type: external, module: sim_provider.HomeNodeProvider}``).

Ray's fake multi-node provider starts every node it launches as a Ray node on this machine.
This one also gives each node a home of its own (``ROOT/node-N``: its ``~/.cache``, its
``~/.config``), with the cluster's auth token copied into it as a launcher's ``file_mounts``
would, a random node id (the parent's differ only in their last digits, and distst names
nodes by their first 12), its own Ray temp dir (``ROOT/tN``: one node's log monitor must
not tail another's logs) and loopback, so that the test finds (and stops) exactly the
processes it made.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
from pathlib import Path

import ray
import ray._private.ray_constants as ray_constants
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
from ray.autoscaler.tags import (NODE_KIND_WORKER, STATUS_UP_TO_DATE, TAG_RAY_NODE_KIND,
                                 TAG_RAY_NODE_NAME, TAG_RAY_NODE_STATUS, TAG_RAY_USER_NODE_TYPE)


class HomeNodeProvider(FakeMultiNodeProvider):
    # the parent's launch, with the node's own HOME, loopback and temp dir added
    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources,
                                               labels):
        resources = copy.deepcopy(resources)
        root = Path(self.provider_config["root"])
        with self.lock:
            node_type = tags[TAG_RAY_USER_NODE_TYPE]
            n = self._next_node_id = self._next_node_id + 1
            node_id = secrets.token_hex(28)
            home = root / f"node-{n}"
            (home / ".ray").mkdir(parents=True, exist_ok=True)
            (home / "node_id").write_text(node_id)
            shutil.copy(root / "head" / ".ray" / "auth_token", home / ".ray" / "auth_token")
            params = ray._private.parameter.RayParams(
                node_ip_address="127.0.0.1", min_worker_port=0, max_worker_port=0,
                dashboard_port=None, dashboard_agent_listen_port=0,
                num_cpus=resources.pop("CPU", 0), num_gpus=resources.pop("GPU", 0),
                object_store_memory=resources.pop("object_store_memory", None),
                resources=resources, labels=labels, temp_dir=str(root / f"t{n}"),
                redis_address=self._gcs_address, gcs_address=self._gcs_address,
                env_vars={"RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id,
                          "RAY_CLOUD_INSTANCE_ID": node_id, "RAY_NODE_TYPE_NAME": node_type,
                          "HOME": str(home),
                          ray_constants.RESOURCES_ENVIRONMENT_VARIABLE: json.dumps(resources),
                          ray_constants.LABELS_ENVIRONMENT_VARIABLE: json.dumps(labels)})
            node = ray._private.node.Node(params, head=False, shutdown_at_exit=False,
                                          spawn_reaper=False)
            self._nodes[node_id] = {"node": node, "tags": {
                TAG_RAY_NODE_KIND: NODE_KIND_WORKER, TAG_RAY_USER_NODE_TYPE: node_type,
                TAG_RAY_NODE_NAME: node_id, TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE, **tags}}
