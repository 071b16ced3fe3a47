"""docker-compose.yml: valid Compose, and consistent with the Dockerfile and the app's settings.

The schema is the Compose Specification's own JSON schema, kept beside this file as
``compose-spec.json`` (no Docker engine or network in CI). Upstream:
https://github.com/compose-spec/compose-spec/blob/master/schema/compose-spec.json, Apache
License 2.0 (``compose-spec.LICENSE``). The copy is the one vendored in the PyPI package
check-jsonschema 0.39.0 (``check_jsonschema/builtin_schemas/vendor/compose-spec.json``,
sha256 d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64); to refresh it, take
that file from a newer check-jsonschema wheel and its licence from ``vendor/licenses``.
"""

from __future__ import annotations

import copy
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from container_files import (
    ROOT,
    Dockerfile,
    healthcheck_command,
    parse_assignments,
    substitute,
)

from app.config import Settings

SCHEMA = Path(__file__).with_name("compose-spec.json")
SETTINGS = {name.upper(): info for name, info in Settings.model_fields.items()}
API_SERVICES = ("api", "api-gpu")
# ${NAME}, ${NAME:-default}, ${NAME-default} (the forms this compose file may use)
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?-(?P<default>[^}]*))?\}")


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """What ``docker compose config`` does with the shell's environment ``env``."""
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate(value, env) for value in node]
    if isinstance(node, str):
        assert "$$" not in node, "teach interpolate() about $$ escapes"
        return substitute(node, env)
    return node


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


@pytest.fixture(scope="module")
def resolved(compose: dict[str, Any]) -> dict[str, Any]:
    """The compose file as Docker would run it with nothing set in the shell: the defaults."""
    return interpolate(copy.deepcopy(compose), {})


def errors(validator: jsonschema.protocols.Validator, document: dict[str, Any]) -> list[str]:
    found = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in found]


def test_compose_file_matches_the_compose_specification(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any], resolved: dict[str, Any]
) -> None:
    assert errors(validator, compose) == []
    assert errors(validator, resolved) == []


def test_the_schema_catches_mistakes(
    validator: jsonschema.protocols.Validator, compose: dict[str, Any]
) -> None:
    """Guard against a schema that accepts anything."""
    wrong_type = copy.deepcopy(compose)
    wrong_type["services"]["api"]["healthcheck"]["interval"] = ["15s"]
    assert errors(validator, wrong_type)
    misspelt = copy.deepcopy(compose)
    misspelt["services"]["api"]["restrat"] = "always"
    assert errors(validator, misspelt)


def test_services_and_profiles(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) >= {"api", "api-gpu", "prometheus"}
    assert "profiles" not in services["api"], "`docker compose up` must start the CPU service"
    assert services["api-gpu"]["profiles"] == ["gpu"]
    assert services["prometheus"]["profiles"] == ["monitoring"]
    for name in API_SERVICES:
        assert services[name]["restart"] == "unless-stopped"


def test_ports_map_container_port_8000_to_distinct_host_ports(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert services["api"]["ports"] == ["8000:8000"]
    host_ports = []
    for name, service in services.items():
        for mapping in service.get("ports", []):
            host, _, container = str(mapping).rpartition(":")
            host_ports.append(host)
            if name in API_SERVICES:
                assert container == "8000", f"{name}: {mapping}"
    assert len(host_ports) == len(set(host_ports)), f"two services on one host port: {host_ports}"


def test_build_flavours(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["api"]["build"]["context"] == "."
    assert services["api"]["build"].get("args", {}).get("FLAVOR", "cpu") == "cpu"
    assert services["api-gpu"]["build"]["args"]["FLAVOR"] == "gpu"
    assert services["api"]["image"] != services["api-gpu"]["image"]


def test_gpu_service_reserves_an_nvidia_gpu(resolved: dict[str, Any]) -> None:
    service = resolved["services"]["api-gpu"]
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert service["environment"]["DEVICE"] == "gpu"
    assert resolved["services"]["api"]["environment"]["DEVICE"] == "auto"


def test_healthchecks_probe_readyz_like_the_dockerfile(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    instruction = dockerfile.final.last("HEALTHCHECK")
    assert instruction is not None, "the runtime stage has no HEALTHCHECK"
    image_check = healthcheck_command(instruction)
    assert "/readyz" in " ".join(image_check)
    for name in API_SERVICES:
        check = compose["services"][name]["healthcheck"]
        assert check["test"][0] == "CMD", f"{name}: exec form, no shell in the test"
        assert check["test"][1:] == image_check, f"{name}: healthcheck differs from the image's"
        assert "start_period" in check, f"{name}: loading models takes a while"


class _ReadyzHandler(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[http.server.HTTPServer]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _ReadyzHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_command_exit_status(
    dockerfile: Dockerfile,
    readyz_server: http.server.HTTPServer,
    status: int,
    healthy: bool,
) -> None:
    """The probe itself: exit 0 on 200, non-zero on 503 (models not ready) and when refused."""
    command = healthcheck_command(dockerfile.final.last("HEALTHCHECK"))
    assert command[0] == "python"
    _ReadyzHandler.status = status
    env = {**os.environ, "PORT": str(readyz_server.server_address[1])}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, timeout=30
    )
    assert (result.returncode == 0) is healthy, result.stderr.decode()[-2000:]


def test_environment_variables_are_settings_the_app_reads(
    compose: dict[str, Any], dockerfile: Dockerfile
) -> None:
    for name in API_SERVICES:
        environment = compose["services"][name]["environment"]
        assert isinstance(environment, dict), f"{name}: use the mapping form"
        unknown = set(environment) - set(SETTINGS)
        assert not unknown, f"{name}: {sorted(unknown)} are not settings (app/config.py)"
        # Everything else the app reads is set by the image (HOST, PORT, MODEL_DIR).
        image_env = {
            key for env in dockerfile.final.all("ENV") for key in parse_assignments(env.value)
        }
        missing = set(SETTINGS) - set(environment) - image_env
        assert not missing, f"{name}: settings neither in compose nor the image: {missing}"


# Defaults compose sets on purpose, unlike the container's own: (name, why).
DELIBERATE = {"REQUIRED_MODELS": "the committed models it mounts must load"}


def test_environment_defaults_are_the_images_defaults(
    compose: dict[str, Any], dockerfile: Dockerfile, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``NAME: ${NAME:-default}`` must default to what the container would use without it: the
    image's ENV where the image sets NAME (WORKERS=auto), else the app's own default; but for
    :data:`DELIBERATE`."""
    image_env: dict[str, str] = {}
    for env in dockerfile.final.all("ENV"):
        image_env.update(parse_assignments(env.value))
    for name in API_SERVICES:
        passthrough: dict[str, str] = {}
        for key, value in compose["services"][name]["environment"].items():
            match = INTERPOLATION.fullmatch(str(value))
            if match and match["name"] == key:
                passthrough[key] = match["default"] or ""
        assert {"MAX_BATCH_SIZE", "WORKERS", "API_KEYS"} <= set(passthrough)
        for key in SETTINGS:
            monkeypatch.delenv(key, raising=False)
        for key in passthrough.keys() & image_env.keys():
            monkeypatch.setenv(key, image_env[key])
        container_defaults = Settings(_env_file=None)
        for key, default in passthrough.items():
            monkeypatch.setenv(key, default)
        with_compose_defaults = Settings(_env_file=None)
        for key in passthrough.keys() - DELIBERATE.keys():
            field = key.lower()
            assert getattr(with_compose_defaults, field) == getattr(container_defaults, field), (
                f"{name}: {key}"
            )


def test_models_are_mounted_read_only_where_model_dir_points(
    resolved: dict[str, Any], dockerfile: Dockerfile
) -> None:
    image_env: dict[str, str] = {}
    for env in dockerfile.final.all("ENV"):
        image_env.update(parse_assignments(env.value))
    for name in API_SERVICES:
        service = resolved["services"][name]
        model_dir = service["environment"].get("MODEL_DIR", image_env["MODEL_DIR"])
        assert model_dir == image_env["MODEL_DIR"], "compose and the image disagree on MODEL_DIR"
        mounts = [str(v).split(":") for v in service["volumes"]]
        matching = [m for m in mounts if m[1] == model_dir]
        assert matching, f"{name}: nothing mounted at {model_dir}"
        source, _, mode = matching[0]
        assert mode == "ro", f"{name}: mount the models read-only"
        assert (ROOT / source).resolve() == ROOT / "models", "default: the committed models"


def test_prometheus_scrapes_the_metrics_endpoint(resolved: dict[str, Any]) -> None:
    service = resolved["services"]["prometheus"]
    assert ":" in service["image"], "pin the image"
    assert not service["image"].endswith(":latest"), "pin the image"
    config_mounts = [
        str(v).split(":") for v in service["volumes"] if str(v).startswith("./deploy/")
    ]
    assert config_mounts, "mount the scrape config from deploy/"
    source, target, _ = config_mounts[0]
    assert target == "/etc/prometheus/prometheus.yml"
    config = yaml.safe_load((ROOT / source).read_text())
    targets = {
        target
        for job in config["scrape_configs"]
        if job.get("metrics_path", "/metrics") == "/metrics"
        for static in job["static_configs"]
        for target in static["targets"]
    }
    assert {f"{name}:8000" for name in API_SERVICES} <= targets


def test_prometheus_loads_the_alert_rules_and_grafana_the_dashboard(
    resolved: dict[str, Any],
) -> None:
    """The monitoring profile: Prometheus reads deploy/monitoring/alerts.yml where
    deploy/prometheus.yml names it, and Grafana gets the Prometheus beside it as its data source
    and the dashboard in the folder its provider reads (tests/e2e/test_monitoring.py runs the
    rules and the dashboard's queries in a real Prometheus)."""

    def mounts(service: dict[str, Any]) -> dict[str, str]:
        return {
            target: source
            for source, target, *_ in (str(v).split(":") for v in service["volumes"])
            if source.startswith("./deploy/")
        }

    prometheus = resolved["services"]["prometheus"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    (rules,) = config["rule_files"]
    assert mounts(prometheus)[f"/etc/prometheus/{rules}"] == "./deploy/monitoring/alerts.yml"

    grafana = resolved["services"]["grafana"]
    assert grafana["profiles"] == ["monitoring"]
    assert ":" in grafana["image"], "pin the image"
    assert not grafana["image"].endswith(":latest"), "pin the image"
    files = mounts(grafana)
    datasources = yaml.safe_load(
        (ROOT / files["/etc/grafana/provisioning/datasources/prometheus.yml"]).read_text()
    )
    (source,) = datasources["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load(
        (
            ROOT / files["/etc/grafana/provisioning/dashboards/keras-inference-service.yml"]
        ).read_text()
    )
    folder = providers["providers"][0]["options"]["path"]
    dashboard = files[f"{folder}/keras-inference-service.json"]
    assert dashboard == "./deploy/monitoring/keras-inference-service.json"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{folder}/keras-inference-service.json"
