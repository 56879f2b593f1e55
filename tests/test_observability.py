"""/metrics, /healthz, /readyz and the job and batch log lines, on real processes."""

from __future__ import annotations

import time
import uuid

import pytest
import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from tasks.embedded_redis import EmbeddedRedis
from tests.live import api_session, stack_on_test_database, wait_for_job

pytestmark = pytest.mark.django_db(transaction=True)


def parse(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]


def value(samples, name: str, **labels) -> float:
    """The sum of the samples of this name whose labels include these."""
    return sum(v for n, sample_labels, v in samples if n == name and labels.items() <= sample_labels.items())


def scrape(base_url: str):
    response = requests.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    return parse(response.text)


def eventually(probe, timeout: float = 60, interval: float = 0.3):
    """probe() once it is truthy; its last answer is returned for the assertion that follows."""
    deadline = time.monotonic() + timeout
    while True:
        answer = probe()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(interval)


@pytest.mark.integration
def test_metrics_and_logs_follow_a_job_through_the_system(live_system, alice, photos):
    session = api_session(alice, live_system)
    model = "efficientnet-lite0"
    before = scrape(live_system.web_url)

    good = [p.path for p in photos[:3]]
    truncated = good[0].read_bytes()[:2000]
    files = [("images", (path.name, path.read_bytes())) for path in good] + [("images", ("cut.jpg", truncated))]
    created = session.post(f"{live_system.web_url}/api/jobs/", files=files, data={"model": model}, timeout=60)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    status = wait_for_job(session, job_id)
    assert (status["status"], status["succeeded"], status["failed"]) == ("done", 3, 1)

    # The worker records its numbers just after it stores the results: wait for them.
    batches_before = value(before, "vq_batch_seconds_count", model=model)
    after = eventually(
        lambda: (s := scrape(live_system.web_url)) and value(s, "vq_batch_seconds_count", model=model) > batches_before and s
    )
    assert after, "the worker's batch never showed in /metrics"

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    # State read from the database: one more job done, three more items succeeded, one failed.
    assert delta("vq_jobs", status="done") == 1
    assert (delta("vq_items", status="succeeded"), delta("vq_items", status="failed")) == (3, 1)
    assert value(after, "vq_items_per_second") > 0
    assert value(after, "vq_queue_length", queue="infer.cpu") == 0
    assert value(after, "vq_metrics_source_up", source="database") == value(after, "vq_metrics_source_up", source="broker") == 1
    # Numbers from the worker process (prefork child), added up by the web's /metrics.
    assert delta("vq_batch_seconds_count", model=model) == 1
    # The 3 readable crops went through one to three forward passes (the micro-batcher decides).
    assert 1 <= delta("vq_inference_seconds_count", model=model, device="cpu") <= 3
    assert delta("vq_inference_seconds_sum", model=model, device="cpu") > 0
    assert delta("vq_batch_size_sum", model=model) == 3
    assert delta("vq_decode_seconds_count", model=model) == 4
    assert delta("vq_items_processed_total", model=model, outcome="succeeded") == 3
    assert delta("vq_items_processed_total", model=model, outcome="failed") == 1
    assert delta("vq_item_failures_total", model=model, kind="corrupt_image") == 1

    # One log line for the batch and one for the job, with ids, counts and timings.
    worker_log = next(child.log_path for child in live_system.children if child.name == "worker")
    log_text = eventually(lambda: f"job {job_id} done" in (text := worker_log.read_text()) and text, timeout=30)
    batch_line = next(line for line in log_text.splitlines() if "batch done:" in line and job_id in line)
    assert f"model={model} items=4 ok=3 failed=1 deleted=0 written=4" in batch_line and " device=cpu " in batch_line
    assert "task=" in batch_line and "forwards=" in batch_line and "total=" in batch_line
    job_line = next(line for line in log_text.splitlines() if f"job {job_id} done" in line)
    assert f"model={model} items=4 succeeded=3 failed=1" in job_line
    # The web's lines for the job, in the order things happened: created, then enqueued.
    web_log = next(child.log_path for child in live_system.children if child.name == "web").read_text()
    web_lines = [line for line in web_log.splitlines() if f"job {job_id} " in line]
    assert [line.split(f"job {job_id} ")[1].split(":")[0] for line in web_lines] == ["created", "enqueued"], web_lines


@pytest.mark.integration
def test_health_endpoints_answer_on_the_running_system(live_system):
    assert requests.get(f"{live_system.web_url}/healthz", timeout=10).json() == {"status": "ok"}
    ready = requests.get(f"{live_system.web_url}/readyz", timeout=10)
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "broker": "ok", "workers": "ok"}}
    # Anonymous, and no session or CSRF cookie is handed out for a probe.
    assert "Set-Cookie" not in ready.headers


def test_queue_length_counts_waiting_messages_in_every_priority_list(client, settings):
    from tasks.celery_app import app

    queue = f"vq-test-{uuid.uuid4().hex[:8]}"
    settings.VQ_METRICS_QUEUES = [queue]
    broker = redis.Redis.from_url(app.conf.broker_url)
    try:
        broker.rpush(queue, "m1", "m2", "m3")
        broker.rpush(queue + "\x06\x166", "m4")  # kombu's list for priority 6
        samples = parse(client.get("/metrics").content.decode())
    finally:
        broker.delete(queue, queue + "\x06\x166")
    assert value(samples, "vq_queue_length", queue=queue) == 4


def test_metrics_token_when_set(client, settings):
    settings.VQ_METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_probes_answer_only_reads(client):
    # A probe never changes anything: other methods are refused.
    assert client.post("/healthz").status_code == 405
    assert client.get("/healthz/").status_code == 200


@pytest.fixture
def system_on_its_own_broker(django_db_setup, django_db_blocker, tmp_path_factory):
    """Web and worker on a Redis this test may stop: never the session's shared one."""
    broker = EmbeddedRedis().start()
    env = {
        "REDIS_URL": broker.url,
        "VQ_WORKER_MODELS": "",  # readiness needs a worker that answers, not a loaded model
    }
    stack = stack_on_test_database(django_db_blocker, tmp_path_factory, "own-broker", env=env)
    stack.broker = broker
    try:
        stack.start(timeout=180)
        yield stack
    finally:
        # After a broker restart the worker's warm shutdown lingers (seen: ~14 s); not this test's subject.
        stack.stop(timeout=5)
        stack.broker.stop()


@pytest.mark.integration
def test_readyz_turns_not_ready_when_the_broker_stops_and_back(system_on_its_own_broker):
    system = system_on_its_own_broker
    readyz = f"{system.web_url}/readyz"
    assert requests.get(readyz, timeout=10).status_code == 200

    port = system.broker.port
    system.broker.stop()
    answer = requests.get(readyz, timeout=10)
    assert answer.status_code == 503
    assert answer.json() == {"status": "not ready", "checks": {"database": "ok", "broker": "failing", "workers": "failing"}}
    # Nothing about the broker's address leaks to the caller.
    assert str(port) not in answer.text and "redis" not in answer.text.lower()
    # The process itself is still alive.
    assert requests.get(f"{system.web_url}/healthz", timeout=10).status_code == 200

    # The same broker comes back (empty: nothing persisted); the worker reconnects, readiness returns.
    system.broker = EmbeddedRedis(port=port).start()
    ready = eventually(lambda: requests.get(readyz, timeout=10).status_code == 200, timeout=90, interval=1)
    assert ready, requests.get(readyz, timeout=10).text
