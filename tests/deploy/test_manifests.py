"""deploy/: every kustomization renders, validates offline in strict mode, and agrees with the app.

Each kustomization under ``deploy/`` (and one overlay composed of the gpu overlay and both
components, which no folder holds) is rendered with ``kubectl kustomize`` and checked:
against the Kubernetes API's schemas (``kubernetes-validate``) and KEDA's and KServe's CRD
schemas, then against what the app, the Dockerfile, docker-compose.yml and the measured
figures of ``bench/footprint.json`` say. How each figure was chosen: docs/kubernetes.md.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_manifests import (
    API_KEYS_SECRET,
    DEPLOY,
    ROOT,
    Workload,
    container_files,
    environment,
    find,
    kind_of,
    kustomizations,
    quantity,
    render,
    rendered,
    validation_errors,
    workloads,
)

from app.config import Settings
from app.main import create_app

SETTINGS = {name.upper() for name in Settings.model_fields}
# Variables the manifests may set that are not the app's settings, and who reads them.
NOT_SETTINGS = {
    # prometheus-client's multiprocess folder (app/metrics.py); python -m app makes one under
    # /tmp when it is unset, which the manifests rely on.
    "PROMETHEUS_MULTIPROC_DIR": "Deployment",
    # KServe's controller: which protocol the custom container speaks.
    "PROTOCOL": "InferenceService",
}
FOOTPRINT = json.loads((ROOT / "bench" / "footprint.json").read_text())
STARTUP_MARGIN = 3  # the startupProbe waits at least this many times the measured start-up
MEMORY_MARGIN = 1.25  # the memory limit holds at least this many times the measured peak
COMPOSED = "docs/kubernetes.md's overlay: gpu + components/keda + components/models-volume"
READINESS = {"/readyz", "/v2/health/ready"}
LIVENESS = {"/healthz", "/v2/health/live"}

TARGETS = [
    str(folder.relative_to(ROOT)) for folder in kustomizations() if kind_of(folder) != "Component"
]


def composed_overlay(folder: Path) -> Path:
    """The user's overlay that docs/kubernetes.md shows (the gpu overlay with both
    components), its paths made relative to ``folder``."""
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    example = re.search(r"To combine variants.*?```yaml\n(.*?)```", docs, re.DOTALL)
    assert example, "docs/kubernetes.md: the example overlay is gone"
    deploy = Path(os.path.relpath(DEPLOY, folder))
    (folder / "kustomization.yaml").write_text(example[1].replace("../deploy", str(deploy)))
    return folder


@pytest.fixture(scope="module", params=[*TARGETS, COMPOSED])
def objects(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], ...]:
    if request.param == COMPOSED:
        return tuple(render(composed_overlay(tmp_path_factory.mktemp("overlay"))))
    return rendered(ROOT / request.param)


@pytest.fixture(scope="module")
def image_env() -> dict[str, str]:
    """The ENV of the Dockerfile's runtime stage (HOST, PORT, MODEL_DIR ...)."""
    files = container_files()
    env: dict[str, str] = {}
    for instruction in files.parse_dockerfile().final.all("ENV"):
        env.update(files.parse_assignments(instruction.value))
    return env


def effective(
    objects: tuple[dict[str, Any], ...], workload: Workload, image_env: dict[str, str]
) -> Callable[[str], str]:
    """The settings the server in ``workload`` runs with: image, then manifests, then the app's
    defaults for the rest."""
    env = {**image_env, **environment(objects, workload.container)}
    defaults = Settings(_env_file=None)
    return lambda name: env.get(name, str(getattr(defaults, name.lower())))


def test_deploy_has_the_kustomizations_the_docs_name() -> None:
    assert {
        "deploy/k8s/overlays/cpu",
        "deploy/k8s/overlays/gpu",
        "deploy/k8s/overlays/keda",
        "deploy/k8s/overlays/models-volume",
        "deploy/kserve",
        "deploy/monitoring",
    } <= set(TARGETS)


def test_every_object_validates_in_strict_mode(objects: tuple[dict[str, Any], ...]) -> None:
    assert objects
    errors = [error for obj in objects for error in validation_errors(obj)]
    assert errors == []


def test_every_component_is_used_by_an_overlay() -> None:
    """Components cannot be rendered alone: each is rendered through an overlay (directly or
    through another component)."""
    components = {f.resolve() for f in kustomizations() if kind_of(f) == "Component"}
    used: set[Path] = set()
    folders = [ROOT / target for target in TARGETS]
    while folders:
        folder = folders.pop()
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        named = {(folder / c).resolve() for c in kustomization.get("components", [])}
        folders += named - used
        used |= named
    assert components
    assert components <= used


def test_the_validators_catch_mistakes() -> None:
    """Guard against schemas that accept anything (a misspelt field, a wrong type)."""
    cpu = rendered(DEPLOY / "k8s" / "overlays" / "cpu")
    deployment = copy.deepcopy(find(cpu, "Deployment", "keras-inference-service"))
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    assert validation_errors(deployment)
    deployment = copy.deepcopy(find(cpu, "Deployment", "keras-inference-service"))
    assert deployment is not None
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "40"
    assert validation_errors(deployment)

    keda = rendered(DEPLOY / "k8s" / "overlays" / "keda")
    scaled = copy.deepcopy(find(keda, "ScaledObject", "keras-inference-service"))
    assert scaled is not None
    assert validation_errors(scaled) == []
    scaled["spec"]["minReplicas"] = 2
    assert validation_errors(scaled)
    scaled = copy.deepcopy(find(keda, "ScaledObject", "keras-inference-service"))
    assert scaled is not None
    scaled["metadata"]["lables"] = {}
    assert validation_errors(scaled)

    kserve = rendered(DEPLOY / "kserve")
    service = copy.deepcopy(find(kserve, "InferenceService", "keras-inference-service"))
    assert service is not None
    service["spec"]["predictor"]["containers"][0]["livenesProbe"] = {}
    assert validation_errors(service)
    service = copy.deepcopy(find(kserve, "InferenceService", "keras-inference-service"))
    assert service is not None
    service["spec"]["predictor"]["minReplicas"] = "two"
    assert validation_errors(service)

    monitoring = rendered(DEPLOY / "monitoring")
    for kind in ("PrometheusRule", "PodMonitor"):
        obj = find(monitoring, kind, "keras-inference-service")
        assert obj is not None
        assert validation_errors(obj) == []
        broken = copy.deepcopy(obj)
        broken["spec"]["selectr"] = {}
        assert validation_errors(broken)
    rule = copy.deepcopy(find(monitoring, "PrometheusRule", "keras-inference-service"))
    assert rule is not None
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    assert validation_errors(rule)


def test_monitoring_scrapes_the_pods_as_the_job_the_rules_select() -> None:
    """The PodMonitor selects the service's pods (every overlay's) on their http port, names
    the job as alerts.yml and the dashboard expect, and keeps the label KEDA's queries use."""
    monitoring = rendered(DEPLOY / "monitoring")
    monitor = find(monitoring, "PodMonitor", "keras-inference-service")
    assert monitor is not None
    spec = monitor["spec"]
    for overlay in ("cpu", "gpu"):
        objects = rendered(DEPLOY / "k8s" / "overlays" / overlay)
        for workload in workloads(objects):
            pod_labels = workload.labels
            assert _selects(spec["selector"]["matchLabels"], pod_labels), overlay
            assert pod_labels[spec["jobLabel"]] == "keras-inference-service"
            ports = {p["name"]: p["containerPort"] for p in workload.container["ports"]}
            (endpoint,) = spec["podMetricsEndpoints"]
            assert ports[endpoint["port"]] == 8000
            assert endpoint["path"] == "/metrics"
    assert spec["podTargetLabels"] == ["app.kubernetes.io/instance"]
    alerts = (DEPLOY / "monitoring" / "alerts.yml").read_text()
    assert 'job="keras-inference-service"' in alerts
    dashboard = find(monitoring, "ConfigMap", "keras-inference-service-dashboard")
    assert dashboard is not None
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["keras-inference-service.json"])["uid"]


def test_environment_variables_are_settings_of_the_app(
    objects: tuple[dict[str, Any], ...], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names and values: the app would start with this environment."""
    for workload in workloads(objects):
        env = environment(objects, workload.container)
        unknown = {
            name
            for name in set(env) - SETTINGS
            if NOT_SETTINGS.get(name) != workload.source["kind"]
        }
        assert not unknown, f"{workload.name}: {sorted(unknown)} are not settings (app/config.py)"
        for name in SETTINGS:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            if name in SETTINGS and not value.startswith("<secret "):
                monkeypatch.setenv(name, value)
        Settings(_env_file=None)  # raises on a value the app would refuse at start-up


def test_api_keys_come_from_a_secret_that_is_not_in_git(
    objects: tuple[dict[str, Any], ...],
) -> None:
    assert not [obj for obj in objects if obj["kind"] == "Secret"]
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    assert f"kubectl create secret generic {API_KEYS_SECRET}" in docs
    for workload in workloads(objects):
        refs = [v for v in workload.container.get("env", []) if v["name"] == "API_KEYS"]
        assert len(refs) == 1, f"{workload.name}: API_KEYS from a Secret"
        ref = refs[0]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == (API_KEYS_SECRET, "API_KEYS")
        assert not ref.get("optional"), "without the Secret the pod must not start"


def test_probes_are_the_apps_routes_on_its_port(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    paths = create_app(Settings(_env_file=None)).openapi()["paths"]
    routes = {path for path, operations in paths.items() if "get" in operations}
    for workload in workloads(objects):
        setting = effective(objects, workload, image_env)
        ports = {p["name"]: p["containerPort"] for p in workload.container["ports"]}
        assert list(ports.values()) == [int(setting("PORT"))], f"{workload.name}: port"
        probes = {
            kind: workload.container[f"{kind}Probe"]
            for kind in ("startup", "readiness", "liveness")
        }
        for kind, probe in probes.items():
            path, port = probe["httpGet"]["path"], probe["httpGet"]["port"]
            assert path in routes, f"{workload.name}: {kind} probe on {path}, not a route"
            assert ports.get(port, port) == int(setting("PORT")), f"{workload.name}: {kind}"
        assert probes["readiness"]["httpGet"]["path"] in READINESS
        assert probes["startup"]["httpGet"]["path"] in READINESS, "ready = models loaded"
        assert probes["liveness"]["httpGet"]["path"] in LIVENESS
        if workload.source["kind"] == "InferenceService":
            assert all(p["httpGet"]["path"].startswith("/v2/") for p in probes.values())


def _workers(
    objects: tuple[dict[str, Any], ...], workload: Workload, image_env: dict[str, str]
) -> int:
    """WORKERS if the manifests or the image set a number, else one per CPU of the limit
    (WORKERS=auto)."""
    value = effective(objects, workload, image_env)("WORKERS")
    env = {**image_env, **environment(objects, workload.container)}
    if "WORKERS" in env and value.isdigit():
        return int(value)
    return math.ceil(quantity(workload.container["resources"]["limits"]["cpu"]))


def _measured(workers: int, key: str) -> float:
    """A figure of bench/footprint.json for ``workers`` workers (linear between the runs)."""
    runs = {run["workers"]: run for run in FOOTPRINT["runs"]}
    figure = {
        n: max(r[when][key] for when in ("ready", "after_load", "after_swap"))
        for n, r in runs.items()
    }
    low, high = sorted(figure)[:2]
    return figure[low] + (workers - low) * (figure[high] - figure[low]) / (high - low)


def test_startup_probe_covers_model_loading(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    for workload in workloads(objects):
        probe = workload.container["startupProbe"]
        budget = probe.get("initialDelaySeconds", 0) + probe.get("periodSeconds", 10) * probe.get(
            "failureThreshold", 3
        )
        workers = _workers(objects, workload, image_env)
        runs = {run["workers"]: run["ready_s"] for run in FOOTPRINT["runs"]}
        measured = runs.get(workers, max(runs.values()))
        assert budget >= STARTUP_MARGIN * measured, (
            f"{workload.name}: the startupProbe gives up after {budget} s; start-up took "
            f"{measured} s with {workers} workers (bench/footprint.json)"
        )


def test_grace_period_covers_the_drain(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    """preStop pause, then uvicorn's drain (REQUEST_TIMEOUT_S + 5 s), then a hung model call
    (REQUEST_TIMEOUT_S): see app/__main__.py and docs/operations.md."""
    for workload in workloads(objects):
        timeout = float(effective(objects, workload, image_env)("REQUEST_TIMEOUT_S"))
        pre_stop = workload.container["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 1, "endpoints are removed asynchronously: pause before SIGTERM"
        needed = pre_stop + (int(timeout) + 5) + timeout
        grace = workload.pod["terminationGracePeriodSeconds"]
        assert grace >= needed, f"{workload.name}: {grace} s < {needed} s"


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_labels_and_selectors_match(objects: tuple[dict[str, Any], ...]) -> None:
    pods = {w.source["metadata"]["name"]: w for w in workloads(objects)}
    deployments = {n: w for n, w in pods.items() if w.source["kind"] == "Deployment"}
    for obj in objects:
        assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == (
            "keras-inference-service"
        ), f"{obj['kind']}/{obj['metadata']['name']}: label app.kubernetes.io/name"
    for name, workload in deployments.items():
        selector = workload.source["spec"]["selector"]["matchLabels"]
        assert _selects(selector, workload.labels), f"{name}: selector does not match its pods"
        others = [w for n, w in deployments.items() if n != name]
        assert not any(_selects(selector, w.labels) for w in others), "selectors overlap"
        for spread in workload.pod.get("topologySpreadConstraints", []):
            assert spread["labelSelector"]["matchLabels"] == selector
    for obj in objects:
        kind, spec = obj["kind"], obj.get("spec", {})
        if kind in ("Service", "PodDisruptionBudget"):
            selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
            matched = [w for w in deployments.values() if _selects(selector, w.labels)]
            assert len(matched) == 1, f"{kind}/{obj['metadata']['name']} selects {len(matched)}"
            if kind == "Service":
                names = {p["name"] for p in matched[0].container["ports"]}
                assert all(p["targetPort"] in names for p in spec["ports"])
        if kind in ("HorizontalPodAutoscaler", "ScaledObject"):
            target = spec["scaleTargetRef"]
            assert target.get("kind", "Deployment") == "Deployment"
            assert target["name"] in deployments, f"{kind} targets {target['name']}"
        if kind == "ScaledObject":
            instance = deployments[spec["scaleTargetRef"]["name"]].labels[
                "app.kubernetes.io/instance"
            ]
            for trigger in spec["triggers"]:
                if trigger["type"] == "prometheus":
                    query = trigger["metadata"]["query"]
                    assert f'app_kubernetes_io_instance="{instance}"' in query, query
    for workload in workloads(objects):
        for volume in workload.pod.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = volume["persistentVolumeClaim"]["claimName"]
                assert find(objects, "PersistentVolumeClaim", claim), f"no claim {claim}"
    for name in deployments:  # one autoscaler and one disruption budget per Deployment
        scalers = [
            o
            for o in objects
            if o["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")
            and o["spec"]["scaleTargetRef"]["name"] == name
        ]
        assert len(scalers) == 1, f"{name}: {len(scalers)} autoscalers"
        assert "replicas" not in deployments[name].source["spec"], "the autoscaler owns it"
        assert sum(o["kind"] == "PodDisruptionBudget" for o in objects) == len(deployments)


def _flavor(workload: Workload) -> str:
    return workload.container["image"].rpartition(":")[2]


def test_image_is_the_one_the_dockerfile_builds(objects: tuple[dict[str, Any], ...]) -> None:
    """keras-inference-service:<FLAVOR>, as docker-compose.yml builds and names it."""
    files = container_files()
    compose = files.load_compose()
    built = {
        service["build"].get("args", {}).get("FLAVOR", "cpu"): service["image"]
        for service in compose["services"].values()
        if "build" in service
    }
    dockerfile = (ROOT / "Dockerfile").read_text()
    for workload in workloads(objects):
        image = workload.container["image"]
        repository, _, flavor = image.rpartition(":")
        assert repository.rpartition("/")[2] == "keras-inference-service", image
        assert built.get(flavor) == f"keras-inference-service:{flavor}", (
            f"{image}: docker-compose.yml builds {built}"
        )
        accepted = re.search(r"^\s+([a-z|]+)\) ;;", dockerfile, re.M)
        assert accepted, "the Dockerfile's FLAVOR check is gone"
        assert flavor in accepted[1].split("|"), f"the Dockerfile has no FLAVOR={flavor}"
        assert "requirements/image-$FLAVOR.txt" in dockerfile
        assert (ROOT / "requirements" / f"image-{flavor}.txt").is_file(), f"no lock for {flavor}"


def test_gpu_workloads_get_a_gpu_and_one_worker(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    for workload in workloads(objects):
        setting = effective(objects, workload, image_env)
        gpu = _flavor(workload) == "gpu"
        limits = workload.container["resources"]["limits"]
        assert (setting("DEVICE") == "gpu") is gpu, workload.name
        assert (int(limits.get("nvidia.com/gpu", 0)) == 1) is gpu, workload.name
        tolerations = {t["key"] for t in workload.pod.get("tolerations", [])}
        assert ("nvidia.com/gpu" in tolerations) is gpu, workload.name
        assert bool(workload.pod.get("nodeSelector")) is gpu, workload.name
        if gpu:
            assert environment(objects, workload.container).get("WORKERS") == "1"


def test_pods_run_unprivileged_on_a_read_only_filesystem(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    files = container_files()
    user = files.parse_dockerfile().final.last("USER").value.split(":")[0]
    for workload in workloads(objects):
        pod, container = workload.pod["securityContext"], workload.container["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert str(pod["runAsUser"]) == user, "the image's user (Dockerfile USER)"
        assert pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert workload.pod["automountServiceAccountToken"] is False
        assert container["allowPrivilegeEscalation"] is False
        assert container["readOnlyRootFilesystem"] is True
        assert container["capabilities"] == {"drop": ["ALL"]}
        volumes = {v["name"]: v for v in workload.pod["volumes"]}
        mounts = {m["mountPath"]: m for m in workload.container["volumeMounts"]}
        # The one place the app writes: /tmp (the multiprocess metrics folder, temp files).
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        assert volumes[mounts["/tmp"]["name"]]["emptyDir"].get("sizeLimit")
        model_dir = effective(objects, workload, image_env)("MODEL_DIR")
        for path, mount in mounts.items():
            if path != "/tmp":
                assert mount.get("readOnly") is True, f"{workload.name}: {path} writable"
                assert path == model_dir, f"{workload.name}: what is {path} for?"


def test_resources_come_from_the_measured_footprint(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    for workload in workloads(objects):
        resources = workload.container["resources"]
        for name in ("cpu", "memory"):
            # Guaranteed QoS: a latency-bound server is neither throttled below its request
            # nor evicted first.
            assert quantity(resources["requests"][name]) == quantity(resources["limits"][name])
        workers = _workers(objects, workload, image_env)
        assert workers <= quantity(resources["limits"]["cpu"]), "a CPU per worker at least"
        need = MEMORY_MARGIN * _measured(workers, "peak_rss_mib_total") * 2**20
        limit = quantity(resources["limits"]["memory"])
        assert limit >= need, (
            f"{workload.name}: {limit / 2**20:.0f} MiB for {workers} workers, measured "
            f"{_measured(workers, 'peak_rss_mib_total'):.0f} MiB (bench/footprint.json)"
        )


def test_models_volume_is_mounted_where_the_app_reads_and_polled(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    for workload in workloads(objects):
        claims = {
            v["name"]: v["persistentVolumeClaim"]
            for v in workload.pod.get("volumes", [])
            if "persistentVolumeClaim" in v
        }
        if not claims:
            continue
        setting = effective(objects, workload, image_env)
        mounts = [m for m in workload.container["volumeMounts"] if m["name"] in claims]
        assert [m["mountPath"] for m in mounts] == [setting("MODEL_DIR")]
        assert float(setting("MODEL_POLL_S")) > 0, "new versions are found by polling"
        for claim in claims.values():
            pvc = find(objects, "PersistentVolumeClaim", claim["claimName"])
            assert pvc is not None
            assert {"ReadWriteMany", "ReadOnlyMany"} & set(pvc["spec"]["accessModes"]), (
                "pods on several nodes mount it"
            )


def test_autoscalers_scale_on_signals_the_app_exports(objects: tuple[dict[str, Any], ...]) -> None:
    from app import metrics

    exported = {metric._name for metric in (metrics.QUEUE_DEPTH, metrics.REQUEST_LATENCY)}
    for obj in objects:
        if obj["kind"] == "HorizontalPodAutoscaler":
            assert obj["apiVersion"] == "autoscaling/v2"
            assert [m["resource"]["name"] for m in obj["spec"]["metrics"]] == ["cpu"]
        if obj["kind"] == "ScaledObject":
            queries = [
                t["metadata"]["query"] for t in obj["spec"]["triggers"] if t["type"] == "prometheus"
            ]
            assert any("model_queue_depth" in q for q in queries)
            for query in queries:
                series = re.findall(r"\b([a-z_]+)\{", query)
                names = {re.sub(r"_(bucket|sum|count)$", "", name) for name in series}
                assert names <= exported, f"{names - exported} are not the app's metrics"


def test_keda_keeps_the_overlays_bounds_and_queues_per_worker(
    objects: tuple[dict[str, Any], ...], image_env: dict[str, str]
) -> None:
    """A ScaledObject scales between the bounds of the HPA it replaces (the overlay's, such as
    the gpu overlay's), and its queue target is 16 waiting instances per worker of a pod."""
    for scaled in (o for o in objects if o["kind"] == "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]["name"]
        (workload,) = [w for w in workloads(objects) if w.source["metadata"]["name"] == target]
        flavor = "gpu" if _flavor(workload) == "gpu" else "cpu"
        hpa = find(
            rendered(DEPLOY / "k8s" / "overlays" / flavor), "HorizontalPodAutoscaler", target
        )
        assert hpa is not None, f"overlays/{flavor} has no HPA for {target}"
        bounds = (scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"])
        assert bounds == (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]), target
        (queue,) = [t for t in scaled["spec"]["triggers"] if "model_queue_depth" in str(t)]
        workers = _workers(objects, workload, image_env)
        assert float(queue["metadata"]["threshold"]) == 16 * workers, f"{target}: {workers} workers"


def test_kserve_predictor_speaks_the_open_inference_protocol(image_env: dict[str, str]) -> None:
    objects = rendered(DEPLOY / "kserve")
    (service,) = [o for o in objects if o["kind"] == "InferenceService"]
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"
    (workload,) = workloads(objects)
    env = environment(objects, workload.container)
    assert env["PROTOCOL"] == "v2"
    ports = [p["containerPort"] for p in workload.container["ports"]]
    assert ports == [int(image_env["PORT"])]
