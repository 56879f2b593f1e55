"""Every Celery setting in one place, each with the reason for its value.

Read by tasks.celery_app. Values come from Django settings where an operator
may want to change them, so there is one source of configuration.
"""

from celery.schedules import crontab
from django.conf import settings

from tasks.embedded_redis import broker_url as _broker_url

# --- Broker -----------------------------------------------------------------
# A real Redis always: REDIS_URL, or the embedded redis-server when unset.
broker_url = _broker_url()
broker_connection_retry_on_startup = True
# A worker whose broker goes away keeps trying to reconnect for as long as it
# takes (Celery's default gives up after 100 tries and the worker exits).
broker_connection_max_retries = None
# A broker that stops answering without closing the connection (paused,
# cut off by the network, failing over) must not hold a web request, or the
# reaper in a worker's main loop, for ever: every connect and every command
# gives up after this many seconds and the caller sees a broker error.
# Consumers are not affected: kombu reads BRPOP replies on the worker's event
# loop, and the server answers each BRPOP within a second.
_broker_timeout_s = 5
broker_connection_timeout = _broker_timeout_s
broker_transport_options = {
    # A task unacknowledged this long is handed to another worker. It must be
    # longer than the hard time limit, or a slow batch would run twice.
    "visibility_timeout": settings.VQ_TASK_HARD_TIME_LIMIT * 4,
    "socket_timeout": _broker_timeout_s,
    "socket_connect_timeout": _broker_timeout_s,
}
# A publish is tried twice (a pooled connection may be stale after the broker
# restarted; the second try opens a new one), then raises. With the timeouts
# above, sending one message gives up within about 2 x 5 s.
task_publish_retry_policy = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}

# --- Results ----------------------------------------------------------------
# Results live in the database (Item rows); Celery's result store is unused.
task_ignore_result = True
result_backend = None

# --- Messages ---------------------------------------------------------------
# JSON only: messages carry item ids and a model name, never image bytes.
task_serializer = "json"
accept_content = ["json"]

# --- Delivery guarantees ----------------------------------------------------
# Acknowledge after the batch is written, and re-queue the batch if the worker
# process dies mid-way; results are written idempotently, so a second
# delivery changes nothing.
task_acks_late = True
task_reject_on_worker_lost = True
# A batch running when the broker connection drops is finished, not killed:
# its results go to the database, which does not need the broker, and a Redis
# that restarted empty could not give the batch back anyway. (Celery warns that
# its default may change; ours is explicit.)
worker_cancel_long_running_tasks_on_connection_loss = False
# One batch at a time per process: a prefetched batch would wait behind the
# current one instead of going to an idle worker.
worker_prefetch_multiplier = 1

# --- Time limits ------------------------------------------------------------
task_soft_time_limit = settings.VQ_TASK_SOFT_TIME_LIMIT
task_time_limit = settings.VQ_TASK_HARD_TIME_LIMIT

# --- Routing ----------------------------------------------------------------
# Queues per device class (infer.cpu, infer.gpu); tasks.dispatch picks one per
# job from its model. Unrouted tasks go to the CPU queue.
task_default_queue = settings.VQ_DEFAULT_QUEUE
task_create_missing_queues = True

# --- Monitoring -------------------------------------------------------------
# Events on, so Flower shows every task as it is sent, started and finished.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True

# --- Periodic tasks ---------------------------------------------------------
# Run by `celery -A tasks beat` (make up starts one). Exactly one beat per
# deployment: two would purge twice (harmless, but wasted). The purge goes to
# the default queue, so any CPU worker runs it.
beat_schedule = {
    "purge-expired-jobs": {
        "task": "vq.purge_expired_jobs",
        "schedule": crontab(hour=3, minute=17),  # daily, off the hour
        "options": {"queue": settings.VQ_DEFAULT_QUEUE, "expires": 6 * 3600},
    },
}
timezone = settings.TIME_ZONE

# --- Worker -----------------------------------------------------------------
# tasks.reaper adds the worker step that runs the stuck-item reaper in every
# worker (no beat needed: it must run even when the queues are long).
imports = ("tasks.inference", "tasks.maintenance", "tasks.reaper")
# Keep our own logging configuration (Django's LOGGING) in worker processes.
worker_hijack_root_logger = False
worker_redirect_stdouts = False
