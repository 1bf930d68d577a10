"""The deployment artifacts, checked without Docker or Kubernetes (neither runs here).

- Dockerfiles: hadolint finds nothing; their build contexts let through what they copy; every pip
  install uses the shared ``constraints.txt``, which pins every direct dependency.
- compose: ``docker compose config`` (Compose v2, which needs no engine for it) accepts the CPU and
  the GPU variant, and the resolved model has the promised shape (one GPU or one cpuset per replica,
  nginx waiting for one healthy replica, /dev/shm sized, a stop grace longer than the drain).
- nginx: the template rendered for loopback passes ``nginx -t`` and has the directives we rely on.
- Kubernetes: the base and the tensor-parallel overlay validate against the Kubernetes API schemas
  (kubernetes-validate, strict), with probes, GPUs, grace period and the HPA metric checked.
- Every environment variable the artifacts set is one the server (``ServerSettings``), the model
  adapter or vLLM (``vllm.envs``) reads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonpatch
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client import CollectorRegistry

from server.engine import ENGINE_SHUTDOWN_TIMEOUT_SECONDS
from server.metrics import ServerMetrics
from server.settings import ENV_PREFIX, ServerSettings
from tests.deploy.nginx_lb import PLACEHOLDERS, ensure_nginx, nginx_command, render_template, write_main_conf

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = (REPO / "Dockerfile", REPO / "docker" / "Dockerfile.cuda")
K8S = REPO / "deploy" / "k8s"
K8S_VARIANTS = ("base", "overlays/7b-tp2")
COMPOSE_VARIANTS = {"cpu": ("compose.yaml",), "gpu": ("compose.yaml", "compose.gpu.yaml")}
DEFAULT_MAX_REQUEST_BYTES = ServerSettings.model_fields["max_request_bytes"].default
DEFAULT_DRAIN_S = ServerSettings.model_fields["drain_timeout_seconds"].default

OTHER_INTERLEAVE_VARS = {"INTERLEAVE_CACHE_DIR"}
"""``INTERLEAVE_*`` variables read outside the settings: the checkpoint cache folder
(``model_adapter.checkpoint.default_cache_dir``; checked below)."""


def _venv_tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    assert found, f"{name} not installed (pip install -e '.[test]')"
    return found


# --- Dockerfiles and constraints -----------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    done = subprocess.run(
        [_venv_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and not done.stdout.strip(), done.stdout + done.stderr


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text().splitlines():
        if line.startswith("COPY "):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_build_context_contains_what_the_image_copies(dockerfile: Path) -> None:
    ignore = Path(str(dockerfile) + ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # an allow-list: everything else stays out of the context
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    for source in _copy_sources(dockerfile):
        assert source.rstrip("/") in allowed, f"{dockerfile.name} copies {source}, its .dockerignore drops it"
        assert (REPO / source).exists(), source


def test_every_pip_install_uses_the_shared_constraints() -> None:
    installs = []
    for dockerfile in DOCKERFILES:
        installs += [(dockerfile.name, m) for m in re.findall(r"pip install [^\n&]*", dockerfile.read_text())]
    makefile = (REPO / "Makefile").read_text()
    installs += [("Makefile", m) for m in re.findall(r"\$\(PIP\) install (?!--upgrade pip)[^\n]*", makefile)]
    assert len(installs) >= 4, installs
    for where, line in installs:
        assert "-c constraints.txt" in line, (where, line)


def test_constraints_pin_every_direct_dependency() -> None:
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        from pin_constraints import CONSTRAINTS, direct_requirements
    finally:
        sys.path.remove(str(REPO / "deploy"))
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==" and not req.extras, line
            pins[canonicalize_name(req.name)] = spec.version
    required = direct_requirements()
    missing = sorted(set(required) - set(pins))
    assert not missing, (
        f"not pinned in constraints.txt: {missing}; run .venv/bin/python deploy/pin_constraints.py"
    )
    for name, reqs in required.items():
        for req in reqs:
            assert req.specifier.contains(pins[name], prereleases=True), (str(req), pins[name])


# --- compose -------------------------------------------------------------------------------------


def _compose_config(variant: str) -> dict:
    files = [a for f in COMPOSE_VARIANTS[variant] for a in ("-f", str(REPO / "docker" / f))]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("INTERLEAVE_", "REPLICA", "NGINX_", "MODELS_DIR"))
    }
    env.pop("VLLM_CPU_KVCACHE_SPACE", None)  # the compose default, not the test session's
    done = subprocess.run(
        [_venv_tool("docker-compose"), *files, "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO / "docker",
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|h|m|s)", value))


@pytest.mark.parametrize("variant", sorted(COMPOSE_VARIANTS))
def test_compose_file_is_valid_and_has_the_promised_shape(variant: str) -> None:
    config = _compose_config(variant)
    services = config["services"]
    replicas = sorted(name for name in services if name.startswith("replica"))
    assert len(replicas) >= 2 and "nginx" in services, sorted(services)
    nginx = services["nginx"]

    # nginx starts when ONE replica is healthy; the others only need to exist (their names resolve)
    conditions = {name: dep["condition"] for name, dep in nginx["depends_on"].items()}
    assert sorted(conditions) == replicas
    assert sorted(conditions.values()) == ["service_healthy"] + ["service_started"] * (len(replicas) - 1)
    # every replica is an upstream, with the server's own body limit
    upstreams = re.findall(r"server (\S+):8000", nginx["environment"]["NGINX_UPSTREAM_SERVERS"])
    assert sorted(upstreams) == replicas
    assert nginx["environment"]["INTERLEAVE_MAX_REQUEST_BYTES"] == str(DEFAULT_MAX_REQUEST_BYTES)
    assert set(PLACEHOLDERS) <= set(nginx["environment"])
    assert any(
        v["target"].startswith("/etc/nginx/templates/") and v["source"].endswith("nginx.conf.template")
        for v in nginx["volumes"]
    )

    gpus, cpusets = [], []
    for name in replicas:
        svc = services[name]
        env = svc["environment"]
        assert env["INTERLEAVE_MAX_REQUEST_BYTES"] == str(DEFAULT_MAX_REQUEST_BYTES)
        drain = float(env.get("INTERLEAVE_DRAIN_TIMEOUT_SECONDS", DEFAULT_DRAIN_S))
        assert _seconds(svc["stop_grace_period"]) > drain + ENGINE_SHUTDOWN_TIMEOUT_SECONDS, svc[
            "stop_grace_period"
        ]
        assert svc["stop_signal"] == "SIGTERM" and svc["init"] is True
        assert "/ready" in " ".join(svc["healthcheck"]["test"])
        assert int(svc["shm_size"]) >= 2**30, svc.get("shm_size")  # Docker's default is 64 MB
        assert any(v["target"] == "/home/serve/.cache" and v["type"] == "volume" for v in svc["volumes"])
        devices = svc.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
        if variant == "gpu":
            assert svc["build"]["dockerfile"] == "docker/Dockerfile.cuda"
            assert "cpuset" not in svc
            (device,) = devices
            assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
            assert len(device["device_ids"]) == 1 and "count" not in device
            gpus.append(device["device_ids"][0])
            assert "VLLM_CPU_KVCACHE_SPACE" not in env
        else:
            assert svc["build"]["dockerfile"] == "Dockerfile"
            assert not devices
            cpusets.append(svc["cpuset"])
    if variant == "gpu":
        assert len(set(gpus)) == len(replicas), gpus  # one GPU each, not the same one
    else:
        assert len(set(cpusets)) == len(replicas), cpusets


# --- nginx ---------------------------------------------------------------------------------------


def _render_loopback(envsubst: str) -> str:
    return render_template(
        envsubst,
        {
            "NGINX_LISTEN": "127.0.0.1:18080",
            "NGINX_UPSTREAM_SERVERS": "server 127.0.0.1:18001 max_fails=1 fail_timeout=10s; "
            "server 127.0.0.1:18002 max_fails=1 fail_timeout=10s;",
            "INTERLEAVE_MAX_REQUEST_BYTES": str(DEFAULT_MAX_REQUEST_BYTES),
        },
    )


def _directives(conf: str, name: str) -> list[str]:
    return [m.strip() for m in re.findall(rf"^\s*{name}\s+([^;]*);", conf, re.MULTILINE)]


def _size_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value)
    assert m, value
    return int(m[1]) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m[2].lower()]


def test_nginx_template_renders_to_a_valid_configuration(tmp_path: Path) -> None:
    nginx, envsubst = ensure_nginx()
    rendered = _render_loopback(envsubst)
    conf = write_main_conf(tmp_path, rendered)
    cmd = nginx_command(nginx, conf)
    done = subprocess.run([cmd[0], "-t", *cmd[1:5]], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr

    assert re.search(r"^\s*least_conn;", rendered, re.MULTILINE)
    assert _directives(rendered, "proxy_buffering") == ["off"]
    assert _directives(rendered, "proxy_request_buffering") == ["on"]
    assert _seconds(_directives(rendered, "proxy_read_timeout")[0]) >= 600
    # the body limit is the server's, and image-sized bodies are not spooled to disk
    assert _size_bytes(_directives(rendered, "client_max_body_size")[0]) == DEFAULT_MAX_REQUEST_BYTES
    assert _size_bytes(_directives(rendered, "client_body_buffer_size")[0]) >= 8 * 2**20
    # retries only where the request did not run: connection errors and a draining replica's 503
    (next_upstream,) = _directives(rendered, "proxy_next_upstream")
    assert next_upstream.split() == ["error", "http_503", "non_idempotent"]
    assert _directives(rendered, "proxy_next_upstream_tries") == ["2"]
    # nginx closes idle upstream connections before the replicas do, so it never reuses one that a
    # replica is closing
    (keepalive_timeout,) = _directives(rendered, "keepalive_timeout")
    assert _seconds(keepalive_timeout) < ServerSettings().keep_alive_timeout_seconds


# --- Kubernetes ----------------------------------------------------------------------------------


def _load_all(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _kustomize(folder: Path) -> list[dict]:
    """The objects of a kustomization: its resources (files or other kustomizations) with its
    JSON 6902 ``patches`` applied (the only transformer our overlays use besides ``images``)."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "patches", "images"}, sorted(
        kustomization
    )
    objects: list[dict] = []
    for resource in kustomization.get("resources", []):
        path = (folder / resource).resolve()
        objects.extend(_kustomize(path) if path.is_dir() else _load_all(path))
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matches = [
            o for o in objects if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]
        ]
        assert len(matches) == 1, target
        patched = jsonpatch.JsonPatch(yaml.safe_load(patch["patch"])).apply(matches[0])
        objects[objects.index(matches[0])] = patched
    for image in kustomization.get("images", []):
        for obj in objects:
            for c in obj.get("spec", {}).get("template", {}).get("spec", {}).get("containers", []):
                name, _, tag = c["image"].partition(":")
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
    return objects


def _by_kind(objects: list[dict]) -> dict[str, dict]:
    kinds = {}
    for obj in objects:
        assert obj["kind"] not in kinds, f"two {obj['kind']} objects"
        kinds[obj["kind"]] = obj
    return kinds


def _env(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("variant", K8S_VARIANTS)
def test_kubernetes_manifests_validate_against_the_api_schemas(variant: str) -> None:
    objects = _kustomize(K8S / variant)
    version = kubernetes_validate.latest_version()
    for obj in objects:
        kubernetes_validate.validate(obj, version, strict=True)  # raises ValidationError
    kinds = _by_kind(objects)
    assert set(kinds) == {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "PersistentVolumeClaim",
    }
    deployment = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    (container,) = pod["containers"]
    env = _env(container)

    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 600  # model load: minutes
    # one GPU per pod, or as many as the tensor-parallel size
    gpus = container["resources"]["limits"]["nvidia.com/gpu"]
    assert gpus == container["resources"]["requests"]["nvidia.com/gpu"]
    assert gpus == int(env.get("INTERLEAVE_TENSOR_PARALLEL_SIZE") or 1)
    assert gpus == (1 if variant == "base" else 2)
    assert "memory" in container["resources"]["limits"]
    # preStop, the drain and the engine's shutdown, all inside the grace period
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain = float(env.get("INTERLEAVE_DRAIN_TIMEOUT_SECONDS") or DEFAULT_DRAIN_S)
    assert pod["terminationGracePeriodSeconds"] > float(pre_stop[1]) + drain + ENGINE_SHUTDOWN_TIMEOUT_SECONDS
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/dev/shm", "/home/serve/.cache", "/models"} <= mounts

    service, pdb, hpa = kinds["Service"], kinds["PodDisruptionBudget"], kinds["HorizontalPodAutoscaler"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    # the HPA scales on the server's own in-flight gauge, served by prometheus-adapter's rule
    (metric,) = hpa["spec"]["metrics"]
    gauge = ServerMetrics(CollectorRegistry()).in_flight._name
    assert metric["type"] == "Pods" and metric["pods"]["metric"]["name"] == gauge
    rules = yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["rules"]["custom"]
    assert any(r["name"]["as"] == gauge and gauge in r["seriesQuery"] for r in rules)


# --- environment variables -----------------------------------------------------------------------


def _artifact_env_vars() -> dict[str, set[str]]:
    """Every variable the artifacts set for the server, by where it is set."""
    found: dict[str, set[str]] = {}
    for variant in K8S_VARIANTS:
        deployment = _by_kind(_kustomize(K8S / variant))["Deployment"]
        for c in deployment["spec"]["template"]["spec"]["containers"]:
            for name in _env(c):
                found.setdefault(name, set()).add(f"k8s {variant}")
    for variant in COMPOSE_VARIANTS:
        services = _compose_config(variant)["services"]
        for name, svc in services.items():
            if name.startswith("replica"):
                for var in svc["environment"]:
                    found.setdefault(var, set()).add(f"compose {variant}")
    for dockerfile in DOCKERFILES:
        instructions = dockerfile.read_text().replace("\\\n", " ").splitlines()
        for line in instructions:
            if line.startswith("ENV "):
                for var in re.findall(r"\b((?:INTERLEAVE|VLLM)_[A-Z0-9_]+)=", line):
                    found.setdefault(var, set()).add(dockerfile.name)
    return found


def test_every_environment_variable_set_is_read_by_the_server_or_vllm(monkeypatch, tmp_path) -> None:
    import vllm.envs

    from model_adapter.checkpoint import default_cache_dir

    settings_vars = {ENV_PREFIX + name.upper() for name in ServerSettings.model_fields}
    vllm_vars = set(vllm.envs.environment_variables)
    found = _artifact_env_vars()
    assert "INTERLEAVE_MODEL" in found and "VLLM_CPU_KVCACHE_SPACE" in found, sorted(found)
    unknown = {
        var: where
        for var, where in found.items()
        if var not in settings_vars | vllm_vars | OTHER_INTERLEAVE_VARS
    }
    assert not unknown, f"set but read by nobody: {unknown}"
    # the one INTERLEAVE_* variable outside the settings really is read where we say
    monkeypatch.setenv("INTERLEAVE_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
