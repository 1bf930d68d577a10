"""What the ``ray`` tests deploy and send: the Serve config derived from deploy/ray/serve_config.yaml
for this CPU machine, and the mixed requests."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "deploy" / "ray" / "serve_config.yaml"
APP = "interleave"
DEPLOYMENT = "InterleaveServer"
NUM_REPLICAS = 2
NUM_CPUS = 3
"""Logical CPUs of the test cluster: one per replica, one spare for the replacement of a killed one."""
MAX_MODEL_LEN = 8192
DEPLOY_TIMEOUT_S = 900.0

# the same engine settings as harness.servers.TINY_ENGINE_FLAGS (the plain server of the comparison)
TINY_ARGS = {
    "dtype": "float32",
    "enforce_eager": True,
    "gpu_memory_utilization": 0.05,
    "max_model_len": MAX_MODEL_LEN,
}


def cpu_serve_config(checkpoint: Path, serve_port: int) -> dict:
    """deploy/ray/serve_config.yaml as this CPU machine runs it: the tiny checkpoint with the CPU
    engine settings, 2 fixed replicas of 1 CPU and no GPU (instead of autoscaling over GPU replicas
    with a tensor-parallel placement group), the proxy on 127.0.0.1:``serve_port``. Everything else
    (import path, route, health checks, graceful shutdown, runtime env) is the file's."""
    config = copy.deepcopy(yaml.safe_load(SERVE_CONFIG.read_text()))
    config["http_options"] = {**config["http_options"], "host": "127.0.0.1", "port": serve_port}
    app = config["applications"][0]
    app["runtime_env"]["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] = "1"
    app["args"] = {"model": str(checkpoint), **TINY_ARGS}
    dep = app["deployments"][0]
    for key in ("autoscaling_config", "placement_group_bundles", "placement_group_strategy"):
        dep.pop(key, None)
    dep["num_replicas"] = NUM_REPLICAS
    dep["ray_actor_options"] = {"num_cpus": 1, "num_gpus": 0}
    return config


def mixed_bodies() -> list[dict]:
    """The mixed load: text, one image, two images, a 4-frame video, a 3-view scene; streaming and
    not (each kind both ways); greedy, 8 tokens."""
    from harness.load import mixed_body

    return [mixed_body(k, max_tokens=8) for k in range(10)]
