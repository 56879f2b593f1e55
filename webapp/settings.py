"""Django settings, read from the environment with working local defaults.

Local defaults need nothing installed: SQLite under var/, the embedded Redis
(tasks.embedded_redis) and DEBUG on. Production sets DEBUG=false, SECRET_KEY,
ALLOWED_HOSTS, DATABASE_URL and REDIS_URL; see README "Configuration".
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = BASE_DIR / "var"

env = environ.Env()

DEBUG = env.bool("DEBUG", default=True)

if DEBUG:
    SECRET_KEY = env.str("SECRET_KEY", default="dev-only-insecure-key-do-not-deploy")
else:
    SECRET_KEY = env.str("SECRET_KEY")  # no default: production must set one

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: no CDN
    "axes",
    "webapp.jobs",
    "webapp.security",
]

MIDDLEWARE = [
    # First: probes and scrapes are answered before the Host check and the
    # HTTPS redirect, since kubelets and Prometheus call pod IPs over plain HTTP.
    "webapp.ops.middleware.OpsEndpointsMiddleware",
    # Outside everything that can fail: an error under /api/ answers JSON, DEBUG or not.
    "webapp.errors.ApiErrorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Before anything reads the body: oversize and over-limit uploads get a clear 4xx.
    "webapp.jobs.limits.RequestLimitsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as axes asks: turns a locked-out login into its 429 answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ---------------------------------------------------------------
DATABASES = {"default": env.db_url("DATABASE_URL", default=f"sqlite:///{STATE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    STATE_DIR.mkdir(exist_ok=True)
    DATABASES["default"]["OPTIONS"] = {
        # Web and worker processes write at once: WAL lets readers go on while
        # one writes, IMMEDIATE takes the write lock up front (no upgrade
        # deadlocks), and the timeout waits for the lock instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests need a file, not :memory:, so worker processes see the same rows.
    DATABASES["default"]["TEST"] = {"NAME": str(STATE_DIR / "test-db.sqlite3")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
# With persistent connections, test each one before reuse (a restarted PostgreSQL).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Auth -------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "job-list"
LOGOUT_REDIRECT_URL = "login"

# --- Internationalisation ---------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Files ------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Uploaded images live here and are served only through owner-checked views.
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(BASE_DIR / "media")))
# Nothing serves this prefix: files go out through owner-checked views only.
MEDIA_URL = "/media/"
# Larger uploads stream to temporary files instead of memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
# Django's two handlers, behind one that keeps parts named '..' or '.' (Django
# drops those silently) so each file is accepted or rejected by name.
FILE_UPLOAD_HANDLERS = [
    "webapp.jobs.multipart.KeepUnnamedFilesHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
FILE_UPLOAD_PERMISSIONS = 0o640

# --- Upload limits (each over-limit file is rejected by name) -----------------
VQ_MAX_FILE_BYTES = env.int("VQ_MAX_FILE_BYTES", default=50 * 1024 * 1024)
VQ_MAX_FILES_PER_JOB = env.int("VQ_MAX_FILES_PER_JOB", default=5000)
VQ_MAX_PIXELS = env.int("VQ_MAX_PIXELS", default=64_000_000)
# Django refuses a request with more files than this before our view runs.
DATA_UPLOAD_MAX_NUMBER_FILES = VQ_MAX_FILES_PER_JOB + 10

# --- Faults: archives, request size, retries and the reaper -----------------
# A .zip upload (recognised by its bytes) is unpacked only within these bounds
# (the bytes for all archives of one request together); over either, the
# archive is rejected by name and nothing from it is used.
VQ_MAX_ZIP_MEMBERS = env.int("VQ_MAX_ZIP_MEMBERS", default=VQ_MAX_FILES_PER_JOB)
VQ_MAX_ZIP_BYTES = env.int("VQ_MAX_ZIP_BYTES", default=2 * 1024**3)
# A request body over this is answered 413 before it is read. Room for one
# full archive plus the multipart overhead.
VQ_MAX_REQUEST_BYTES = env.int("VQ_MAX_REQUEST_BYTES", default=VQ_MAX_ZIP_BYTES + 64 * 1024**2)
# New uploads first ping the broker this long; no answer is a 503, nothing created.
VQ_BROKER_CHECK_TIMEOUT = env.float("VQ_BROKER_CHECK_TIMEOUT", default=1.0)
# An item that gets no result this many times in a row (its worker died, its
# batch hit the time limit, or its machine vanished) fails instead of looping.
VQ_MAX_ATTEMPTS = env.int("VQ_MAX_ATTEMPTS", default=3)
# Retries of a batch after a transient error (database locked or gone, broker
# connection lost, CUDA out of memory), with exponential back-off.
VQ_TASK_MAX_RETRIES = env.int("VQ_TASK_MAX_RETRIES", default=3)
# Every worker runs the reaper this often (seconds; 0 = never): items left
# running past the hard time limit plus VQ_REAPER_GRACE go back on the queue,
# and queued items whose messages the broker lost are sent again.
VQ_REAPER_INTERVAL = env.int("VQ_REAPER_INTERVAL", default=60)
VQ_REAPER_GRACE = env.int("VQ_REAPER_GRACE", default=60)

# --- Inference --------------------------------------------------------------
VQ_DEFAULT_MODEL = env.str("VQ_DEFAULT_MODEL", default="efficientnet-lite0")
VQ_DEFAULT_QUEUE = env.str("VQ_DEFAULT_QUEUE", default="infer.cpu")
# Models served by another pool, e.g. "efficientnet-lite2=infer.gpu".
VQ_MODEL_QUEUES = env.dict("VQ_MODEL_QUEUES", default={})
# Items per task message; one message is one batched forward pass.
VQ_BATCH_SIZE = env.int("VQ_BATCH_SIZE", default=8)
VQ_TASK_SOFT_TIME_LIMIT = env.int("VQ_TASK_SOFT_TIME_LIMIT", default=240)
VQ_TASK_HARD_TIME_LIMIT = env.int("VQ_TASK_HARD_TIME_LIMIT", default=300)
VQ_THUMBNAIL_SIZE = env.int("VQ_THUMBNAIL_SIZE", default=256)
# Worker side: models loaded (and warmed up) at process start; others load on
# first use. Unset: every installed model routed to the queues the worker
# consumes. VQ_DEVICE "auto" picks CUDA when present, else CPU.
VQ_WORKER_MODELS = env.list("VQ_WORKER_MODELS", default=[])
VQ_DEVICE = env.str("VQ_DEVICE", default="auto")
# 0 = cores / worker processes, so processes x threads never oversubscribes.
VQ_TORCH_THREADS = env.int("VQ_TORCH_THREADS", default=0)
# Processes in the CPU pool started by `make up` (each loads its own model).
# 0 = one per core: on CPUs, processes with one torch thread each beat one
# process with many threads (README "Performance").
VQ_WORKER_CONCURRENCY = env.int("VQ_WORKER_CONCURRENCY", default=0)

# --- Throughput: pools, batching and layout per device class -----------------
# Defaults come from `make bench` on the reference machines (README
# "Performance"); change them from measurement, not by guess.
VQ_CPU_QUEUE = VQ_DEFAULT_QUEUE
VQ_GPU_QUEUE = env.str("VQ_GPU_QUEUE", default="infer.gpu")
# Crops per forward pass. On a small CPU one crop at a time per process is as
# fast per image as any batch (activations stay in cache); a GPU needs many.
VQ_CPU_FORWARD_BATCH = env.int("VQ_CPU_FORWARD_BATCH", default=1)
VQ_GPU_FORWARD_BATCH = env.int("VQ_GPU_FORWARD_BATCH", default=64)
VQ_CPU_CHANNELS_LAST = env.bool("VQ_CPU_CHANNELS_LAST", default=True)
VQ_GPU_CHANNELS_LAST = env.bool("VQ_GPU_CHANNELS_LAST", default=True)
# Mixed precision on the GPU: float16, bfloat16 or off (fp32).
VQ_GPU_AUTOCAST = env.str("VQ_GPU_AUTOCAST", default="float16")
# The longest a crop waits for company before its forward pass starts, when
# more crops are on their way (dynamic batching across tasks and jobs).
VQ_BATCH_DELAY_MS = env.float("VQ_BATCH_DELAY_MS", default=5.0)
# Threads per worker process that decode images while the model runs.
# 0 = 2 in a CPU pool child (the cores belong to the model), and the GPU
# worker's share of the cores in a GPU worker (decoding feeds the GPU).
VQ_DECODE_THREADS = env.int("VQ_DECODE_THREADS", default=0)
# Tasks in flight per GPU worker process (threads pool): their crops meet in
# one batcher, so this bounds how many jobs can share a forward pass.
VQ_GPU_WORKER_THREADS = env.int("VQ_GPU_WORKER_THREADS", default=16)
# GPU pool in `make up`: auto = one worker per visible GPU when there is one.
VQ_GPU_POOL = env.str("VQ_GPU_POOL", default="auto")

# --- API --------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so an anonymous API call gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "webapp.security.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "webapp.jobs.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- Security: API tokens, upload limits, login throttling, files, retention --
# Uploads (jobs created) per user per rolling hour, and images per user per
# rolling 24 hours; 0 turns a limit off. Staff can override both per user in
# the admin (Users -> upload limits).
VQ_UPLOADS_PER_HOUR = env.int("VQ_UPLOADS_PER_HOUR", default=120)
VQ_IMAGES_PER_DAY = env.int("VQ_IMAGES_PER_DAY", default=20_000)
# Accounts made per client address per rolling 24 hours (0: no limit), so
# that signing up again does not multiply the per-user limits.
VQ_SIGNUPS_PER_DAY = env.int("VQ_SIGNUPS_PER_DAY", default=10)

# Jobs (rows and files) older than this many days are deleted by the daily
# purge (Celery beat, or `manage.py purge_expired_jobs` from cron); 0 keeps
# them forever.
VQ_RETENTION_DAYS = env.int("VQ_RETENTION_DAYS", default=30)

# How owner-checked views hand files out: "django" streams them from the app;
# "x-accel-redirect" (nginx) and "x-sendfile" (Apache, lighttpd) let the web
# server send the file after Django has checked the owner. See README
# "Private files".
VQ_FILE_SERVING = env.str("VQ_FILE_SERVING", default="django")
if VQ_FILE_SERVING not in ("django", "x-accel-redirect", "x-sendfile"):
    raise ValueError(f"VQ_FILE_SERVING={VQ_FILE_SERVING!r}: use django, x-accel-redirect or x-sendfile")
# The internal nginx location that maps onto MEDIA_ROOT.
VQ_X_ACCEL_PREFIX = env.str("VQ_X_ACCEL_PREFIX", default="/protected-media/")

# Reverse proxies in front of the app that append to X-Forwarded-For; 0 means
# REMOTE_ADDR is the client. Used to throttle logins by the real address.
VQ_TRUSTED_PROXIES = env.int("VQ_TRUSTED_PROXIES", default=0)

# Login throttling by django-axes: after this many failures for one username
# from one address, that pair is refused (429) for the cool-off period.
AUTHENTICATION_BACKENDS = [
    "webapp.security.login.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("VQ_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("VQ_LOGIN_COOLOFF_MINUTES", default=15) / 60  # hours
# Username and address together: an attacker cannot lock a user out from
# everywhere, and one office behind a NAT does not lock itself out.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_CLIENT_IP_CALLABLE = "webapp.security.login.client_ip"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webapp.security.login.locked_out"
AXES_VERBOSE = False

# OpenAPI schema at /api/schema/, Swagger UI at /api/docs/ (assets from the
# sidecar app, so the docs work offline and load nothing from a CDN).
SPECTACULAR_SETTINGS = {
    "TITLE": "VisionQueue API",
    "DESCRIPTION": "Batch image recognition: upload images as a job, read top-5 labels per image.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.security.schema.add_unauthenticated_responses",
    ],
    "ENUM_NAME_OVERRIDES": {
        "JobStatusEnum": "webapp.jobs.models.Job.Status",
        "ItemStatusEnum": "webapp.jobs.models.Item.Status",
    },
}

# --- Flower (the task monitor `make up` starts) --------------------------------
# "user:password", several separated by commas, puts Flower behind HTTP basic
# auth. Handed to Flower in its environment, never on its command line, where
# any local user could read it with ps.
FLOWER_BASIC_AUTH = env.list("FLOWER_BASIC_AUTH", default=[])
for _credential in FLOWER_BASIC_AUTH:
    if ":" not in _credential.strip(":"):
        raise environ.ImproperlyConfigured("FLOWER_BASIC_AUTH takes user:password pairs separated by commas")

# --- Logging ----------------------------------------------------------------
# LOG_FORMAT=json: one JSON object per line, with the structured fields that
# job and batch lines carry (ids, counts, timings) as keys of their own.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT!r}")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        # Replaces Django's own handlers for its loggers (a bare console copy
        # while DEBUG, mail to admins): every line goes once, through the root.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "django.server": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}

# --- Production security (DEBUG=false) ----------------------------------------
# What `manage.py check --deploy` asks for. TLS ends at a proxy or ingress in
# front of gunicorn; SECURE_PROXY_SSL_HEADER trusts its X-Forwarded-Proto, so
# set it only when that proxy strips the header from clients' requests.
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    # Probes and scrapes come over plain HTTP from inside the cluster.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
    SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=True)
    if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Operations: health, readiness, metrics -------------------------------------
# /readyz: ready when the database and broker answer and some worker answered
# a ping within this many seconds (the answer is shared through Redis, so one
# ping serves every web process). Set VQ_READY_REQUIRES_WORKER=false where
# workers may scale to zero and the web should still take traffic.
VQ_READY_WORKER_MAX_AGE = env.int("VQ_READY_WORKER_MAX_AGE", default=60)
VQ_READY_REQUIRES_WORKER = env.bool("VQ_READY_REQUIRES_WORKER", default=True)
# /metrics needs "Authorization: Bearer <token>" when this is set.
VQ_METRICS_TOKEN = env.str("VQ_METRICS_TOKEN", default="")
# A worker's main process serves its pool's metrics on this port (0 = off).
VQ_METRICS_PORT = env.int("VQ_METRICS_PORT", default=0)
# Queues whose length /metrics reports (besides those of VQ_DEFAULT_QUEUE and VQ_MODEL_QUEUES).
VQ_METRICS_QUEUES = env.list("VQ_METRICS_QUEUES", default=["infer.cpu", "infer.gpu"])
