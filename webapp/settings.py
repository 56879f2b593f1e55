"""Django settings, read from the environment with working local defaults.

Local defaults need nothing installed: SQLite under var/, the embedded Redis
(tasks.embedded_redis) and DEBUG on. Production sets DEBUG=false, SECRET_KEY,
ALLOWED_HOSTS, DATABASE_URL and REDIS_URL; see README "Configuration".
"""

from pathlib import Path

import environ

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
    "rest_framework.authtoken",
    "webapp.jobs",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
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
FILE_UPLOAD_PERMISSIONS = 0o640

# --- Upload limits (each over-limit file is rejected by name) -----------------
VQ_MAX_FILE_BYTES = env.int("VQ_MAX_FILE_BYTES", default=50 * 1024 * 1024)
VQ_MAX_FILES_PER_JOB = env.int("VQ_MAX_FILES_PER_JOB", default=5000)
VQ_MAX_PIXELS = env.int("VQ_MAX_PIXELS", default=64_000_000)
# Django refuses a request with more files than this before our view runs.
DATA_UPLOAD_MAX_NUMBER_FILES = VQ_MAX_FILES_PER_JOB + 10

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
# first use. "auto" picks CUDA when present, else CPU.
VQ_WORKER_MODELS = env.list("VQ_WORKER_MODELS", default=[VQ_DEFAULT_MODEL])
VQ_DEVICE = env.str("VQ_DEVICE", default="auto")
# 0 = cores / worker processes, so processes x threads never oversubscribes.
VQ_TORCH_THREADS = env.int("VQ_TORCH_THREADS", default=0)
# Processes in the CPU pool started by `make up` (each loads its own model).
VQ_WORKER_CONCURRENCY = env.int("VQ_WORKER_CONCURRENCY", default=1)

# --- API --------------------------------------------------------------------
REST_FRAMEWORK = {
    # Token first, so an anonymous API call gets 401 with WWW-Authenticate.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "webapp.jobs.pagination.Pagination",
    "PAGE_SIZE": 50,
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
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.server": {"level": "WARNING"},
        "celery": {"level": "INFO"},
    },
}
