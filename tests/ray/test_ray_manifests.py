"""The Ray artifacts without a cluster: deploy/ray/serve_config.yaml and the RayService manifest
against Ray's own Serve config schema (``ray.serve.schema.ServeDeploySchema``), their application
arguments against the settings, their resources against :func:`server.ray_serve.deployment_options`,
the manifest's pod templates against the Kubernetes schema (kubernetes-validate), and the builder
behind ``serve run server.ray_serve:app``.

KubeRay's CRDs are not in kubernetes-validate: the RayService's own fields are checked against the
field names of KubeRay's ray.io/v1 API (RayServiceSpec, RayClusterSpec, HeadGroupSpec,
WorkerGroupSpec), the embedded Serve config with Ray's schema and each pod template as a Kubernetes
``v1 PodTemplate``.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import ray
import yaml
from pydantic import ValidationError
from ray.serve.schema import ServeDeploySchema

from server import ray_serve
from server.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]
SERVE_CONFIG = REPO / "deploy" / "ray" / "serve_config.yaml"
RAYSERVICE = REPO / "deploy" / "k8s" / "rayservice.yaml"
K8S_VERSION = "1.30.0"

# Field names of KubeRay's ray.io/v1 types (ray-operator/apis/ray/v1): what a RayService may hold.
RAYSERVICE_SPEC = {
    "serveConfigV2",
    "rayClusterConfig",
    "serveService",
    "upgradeStrategy",
    "excludeHeadPodFromServeSvc",
    "rayClusterDeletionDelaySeconds",
    "managedBy",
    "suspend",
}
RAYCLUSTER_SPEC = {
    "rayVersion",
    "enableInTreeAutoscaling",
    "autoscalerOptions",
    "headGroupSpec",
    "workerGroupSpecs",
    "headServiceAnnotations",
    "gcsFaultToleranceOptions",
    "authOptions",
    "networkPolicy",
    "managedBy",
    "suspend",
    "tlsOptions",
    "upgradeStrategy",
}
HEAD_GROUP_SPEC = {
    "rayStartParams",
    "template",
    "serviceType",
    "headService",
    "enableIngress",
    "resources",
    "labels",
}
WORKER_GROUP_SPEC = {
    "groupName",
    "replicas",
    "minReplicas",
    "maxReplicas",
    "rayStartParams",
    "template",
    "scaleStrategy",
    "numOfHosts",
    "idleTimeoutSeconds",
    "suspend",
    "resources",
    "labels",
    "priority",
}
AUTOSCALER_OPTIONS = {
    "idleTimeoutSeconds",
    "upscalingMode",
    "image",
    "imagePullPolicy",
    "resources",
    "env",
    "envFrom",
    "securityContext",
    "volumeMounts",
    "version",
}


def load_config() -> dict:
    return yaml.safe_load(SERVE_CONFIG.read_text())


def load_rayservice() -> dict:
    return yaml.safe_load(RAYSERVICE.read_text())


def the_deployment(config: dict) -> dict:
    (app,) = config["applications"]
    (dep,) = app["deployments"]
    return dep


@pytest.mark.parametrize("source", ["serve_config.yaml", "rayservice serveConfigV2"])
def test_serve_config_passes_rays_schema_and_our_settings(source):
    config = (
        load_config()
        if source == "serve_config.yaml"
        else yaml.safe_load(load_rayservice()["spec"]["serveConfigV2"])
    )
    schema = ServeDeploySchema.model_validate(config)
    (app,) = schema.applications
    assert app.import_path == "server.ray_serve:app"
    assert app.route_prefix == "/"
    (dep,) = app.deployments
    assert dep.name == ray_serve.DEPLOYMENT_NAME
    auto = dep.autoscaling_config
    assert (
        auto["min_replicas"] <= auto["initial_replicas"] <= auto["max_replicas"]
        and auto["target_ongoing_requests"] > 0
    )
    # the application arguments and INTERLEAVE_* variables are valid interleave-serve settings
    settings = ray_serve.settings_from_args(app.args)
    env = {
        k[len("INTERLEAVE_") :].lower(): v
        for k, v in app.runtime_env["env_vars"].items()
        if k.startswith("INTERLEAVE_")
    }
    assert set(env) <= set(ServerSettings.model_fields), env
    ServerSettings(**env)
    # Ray routes at most what a replica admits (more would get the replica's 503 instead of waiting)
    assert dep.max_ongoing_requests <= settings.max_concurrent_requests
    # Ray kills a stopping replica after graceful_shutdown_timeout_s: the drain and the engine
    # shutdown must fit
    drain = float(env.get("drain_timeout_seconds", settings.drain_timeout_seconds))
    assert dep.graceful_shutdown_timeout_s >= drain + ray_serve.SHUTDOWN_MARGIN_SECONDS


@pytest.mark.parametrize("source", ["serve_config.yaml", "rayservice serveConfigV2"])
def test_resources_agree_with_the_settings(source):
    """The file's resources are what server.ray_serve derives from its settings: a tensor-parallel
    replica's GPUs in a PACK placement group, bundle 0 = the replica's CPUs + the first GPU."""
    config = (
        load_config()
        if source == "serve_config.yaml"
        else yaml.safe_load(load_rayservice()["spec"]["serveConfigV2"])
    )
    app = config["applications"][0]
    dep = the_deployment(config)
    settings = ray_serve.settings_from_args(app["args"])
    derived = ray_serve.deployment_options(settings, gpus=True, num_cpus=dep["ray_actor_options"]["num_cpus"])
    assert dep["ray_actor_options"] == derived["ray_actor_options"]
    assert dep["placement_group_bundles"] == derived["placement_group_bundles"]
    assert dep["placement_group_strategy"] == derived["placement_group_strategy"]
    assert (
        sum(b.get("GPU", 0) for b in dep["placement_group_bundles"])
        == settings.tensor_parallel_size * settings.pipeline_parallel_size
    )


def test_rayservice_embeds_the_serve_config():
    """serveConfigV2 is deploy/ray/serve_config.yaml without http_options (KubeRay runs the proxy)."""
    config = load_config()
    config.pop("http_options")
    assert yaml.safe_load(load_rayservice()["spec"]["serveConfigV2"]) == config


def test_rayservice_structure():
    doc = load_rayservice()
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == "RayService"
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert set(spec) <= RAYSERVICE_SPEC, set(spec) - RAYSERVICE_SPEC
    assert isinstance(spec["serveConfigV2"], str)
    cluster = spec["rayClusterConfig"]
    assert set(cluster) <= RAYCLUSTER_SPEC, set(cluster) - RAYCLUSTER_SPEC
    assert cluster["rayVersion"] == ray.__version__  # the Ray the [ray] extra pins
    assert set(cluster.get("autoscalerOptions", {})) <= AUTOSCALER_OPTIONS
    head = cluster["headGroupSpec"]
    assert set(head) <= HEAD_GROUP_SPEC, set(head) - HEAD_GROUP_SPEC
    groups = cluster["workerGroupSpecs"]
    assert groups
    for group in [head, *groups]:
        # KubeRay's rayStartParams is map[string]string
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in group["rayStartParams"].items())
    for group in groups:
        assert set(group) <= WORKER_GROUP_SPEC, set(group) - WORKER_GROUP_SPEC
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    # one worker pod holds a whole tensor-parallel replica (PACK keeps it on one node if it can)
    dep = the_deployment(yaml.safe_load(spec["serveConfigV2"]))
    gpus_per_replica = sum(b.get("GPU", 0) for b in dep["placement_group_bundles"])
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= gpus_per_replica


@pytest.mark.parametrize("group", ["head", "worker"])
def test_rayservice_pod_templates_pass_the_kubernetes_schema(group):
    cluster = load_rayservice()["spec"]["rayClusterConfig"]
    templates = (
        [cluster["headGroupSpec"]["template"]]
        if group == "head"
        else [g["template"] for g in cluster["workerGroupSpecs"]]
    )
    for template in templates:
        pod_template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": "t"},
            "template": template,
        }
        kubernetes_validate.validate(pod_template, K8S_VERSION, strict=True)


def test_the_builder_validates_arguments():
    with pytest.raises(ValueError, match="unknown application argument"):
        ray_serve.settings_from_args({"max_model_length": 4096})
    with pytest.raises(ValueError, match="http_options"):
        ray_serve.settings_from_args({"port": 9000})
    with pytest.raises(ValidationError):
        ray_serve.settings_from_args({"max_model_len": "many"})
    assert (
        ray_serve.settings_from_args({"max_model_len": "4096", "enforce_eager": "true"}).max_model_len == 4096
    )


def test_deployment_options():
    from server.settings import ServerSettings as S

    one = ray_serve.deployment_options(S(), gpus=True)
    assert (
        one["ray_actor_options"] == {"num_cpus": 1.0, "num_gpus": 1.0}
        and "placement_group_bundles" not in one
    )
    cpu = ray_serve.deployment_options(S(), gpus=False)
    assert cpu["ray_actor_options"]["num_gpus"] == 0.0
    # tensor parallel on one node with vLLM's multiprocessing executor: the replica holds all GPUs
    mp = ray_serve.deployment_options(S(tensor_parallel_size=4, distributed_executor_backend="mp"), gpus=True)
    assert mp["ray_actor_options"]["num_gpus"] == 4.0 and "placement_group_bundles" not in mp
    # tensor x pipeline parallel on vLLM's Ray executor: one bundle per GPU, the replica in bundle 0
    tp = ray_serve.deployment_options(
        S(tensor_parallel_size=2, pipeline_parallel_size=2, distributed_executor_backend="ray"),
        gpus=True,
        num_cpus=4,
    )
    assert tp["placement_group_bundles"] == [{"CPU": 4, "GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}, {"GPU": 1.0}]
    assert tp["ray_actor_options"] == {"num_cpus": 4, "num_gpus": 0}
    with pytest.raises(ValueError, match="needs GPUs"):
        ray_serve.deployment_options(S(distributed_executor_backend="ray"), gpus=False)
    assert one["graceful_shutdown_timeout_s"] == S().drain_timeout_seconds + ray_serve.SHUTDOWN_MARGIN_SECONDS


def test_the_import_path_builds_the_application():
    """What ``serve run server.ray_serve:app max_model_len=4096`` does before deploying: import the
    builder, call it with the (string) arguments, build the application."""
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary
    from ray.serve._private.build_app import build_app

    application = call_user_app_builder_with_args_if_necessary(
        import_attr("server.ray_serve:app"), {"max_model_len": "4096", "enforce_eager": "true"}
    )
    (dep,) = build_app(application, name="interleave").deployments
    assert dep.name == ray_serve.DEPLOYMENT_NAME
    assert dep.init_args == ({"max_model_len": "4096", "enforce_eager": "true"},)
    assert dep.max_ongoing_requests == ServerSettings().max_concurrent_requests
    import torch

    assert dep.ray_actor_options == {"num_cpus": 1.0, "num_gpus": 1.0 if torch.cuda.is_available() else 0.0}
    with pytest.raises(ValueError, match="unknown application argument"):
        call_user_app_builder_with_args_if_necessary(import_attr("server.ray_serve:app"), {"modle": "/m"})
