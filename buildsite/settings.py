"""Buildsite settings: every value comes from the environment, with defaults that run
on a laptop with nothing installed (SQLite, the q2 ORM broker, the local executor when
no Docker engine answers). The README lists every variable."""

import os
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.management.utils import get_random_secret_key

from buildsite.structured_logging import current_release

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DATA_DIR = Path(env_str("BUILDSITE_DATA_DIR") or BASE_DIR / "var")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def local_secret(filename: str, generate) -> str:
    """A key generated once and kept in DATA_DIR, so a machine with nothing configured
    still signs sessions and encrypts secrets with a key nobody else has."""
    path = DATA_DIR / filename
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(generate())
    return path.read_text().strip()


SECRET_KEY = env_str("SECRET_KEY") or local_secret("secret_key", get_random_secret_key)
# Comma-separated Fernet keys; the first encrypts, all decrypt (so a key can be rotated).
BUILDSITE_ENCRYPTION_KEYS = env_list("BUILDSITE_ENCRYPTION_KEY", "") or [
    local_secret("encryption_key", lambda: Fernet.generate_key().decode())
]

DEBUG = env_bool("DEBUG")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
# Public base URL used in webhook and deploy hook URLs shown to users.
BUILDSITE_BASE_URL = env_str("BUILDSITE_BASE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_q",
    "accounts",
    "builds",
]

MIDDLEWARE = [
    "buildsite.middleware.RequestContextMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "buildsite.urls"
ASGI_APPLICATION = "buildsite.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
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

DATABASE_URL = env_str("DATABASE_URL")
DATABASES = {
    # conn_max_age=0: daphne runs ORM calls in a thread pool, where persistent
    # connections are never closed by the request cycle.
    "default": dj_database_url.parse(
        DATABASE_URL or f"sqlite:///{DATA_DIR / 'db.sqlite3'}",
        conn_max_age=0,
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # IMMEDIATE takes SQLite's write lock at BEGIN, which is what makes a
        # transaction there as safe as select_for_update on PostgreSQL; WAL lets
        # daphne read while the q2 cluster writes log lines.
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too, not the default shared in-memory database: builds write
    # from several threads, which SQLite serialises with file locks and the busy
    # timeout above, while a shared in-memory database fails them at once.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test_db.sqlite3")}
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
if IS_POSTGRES:
    # Parameters travel apart from the SQL, so a statement run five times on a
    # connection is prepared: PostgreSQL then skips parsing and planning it (1.3 ms of
    # the 2.4 ms a webhook delivery's write took). Connections live long in the web
    # process's pool, where this pays. Not for a PgBouncer in transaction mode, which
    # cannot keep prepared statements.
    DATABASES["default"].setdefault("OPTIONS", {}).update(server_side_binding=True, prepare_threshold=5)
# BUILDSITE_DB_POOL=N keeps up to N PostgreSQL connections in a pool. Set it for the
# web process (daphne) only: daphne runs every request in a new thread, so without a
# pool each request opens a connection (about 10 ms); the q2 cluster forks its
# workers, and a pool does not survive a fork.
BUILDSITE_DB_POOL = env_int("BUILDSITE_DB_POOL", 0)
if BUILDSITE_DB_POOL and IS_POSTGRES:
    # A request waits at most 5 s for a connection (psycopg's default is 30): while the
    # database is down, /readyz says so and requests fail in 5 s rather than hang for 30
    # (longer than GitHub waits for a webhook's answer). Connections broken by a
    # database restart are replaced when taken (CONN_HEALTH_CHECKS above).
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": BUILDSITE_DB_POOL,
        "timeout": 5,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")

if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL], "capacity": 1000, "expiry": 30},
        }
    }
else:
    # A file cache is shared by daphne and the q2 cluster without a server.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(DATA_DIR / "cache"),
        }
    }
    # No cross-process layer without a server: the in-memory layer carries events
    # inside the web process only, and websocket consumers poll the database (the
    # source of truth for status and logs) every BUILDSITE_LIVE_POLL_SECONDS, which
    # defaults to the log pump's own flush interval so the view is just as live.
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# How often a websocket consumer re-reads the database. With Redis this is only the
# safety net for messages channels-redis drops when a client's channel is full.
BUILDSITE_LIVE_POLL_SECONDS = float(env_str("BUILDSITE_LIVE_POLL_SECONDS") or (2.0 if REDIS_URL else 0.25))

# Builds.
BUILDSITE_DEFAULT_CONCURRENCY = env_int("BUILDSITE_DEFAULT_CONCURRENCY", 6)
BUILDSITE_DEFAULT_BUILD_TIMEOUT = env_int("BUILDSITE_DEFAULT_BUILD_TIMEOUT", 20 * 60)
BUILDSITE_MAX_BUILD_TIMEOUT = env_int("BUILDSITE_MAX_BUILD_TIMEOUT", 60 * 60)
BUILDSITE_DEFAULT_IMAGE = env_str("BUILDSITE_DEFAULT_IMAGE", "buildsite/build:latest")
BUILDSITE_HEARTBEAT_SECONDS = env_int("BUILDSITE_HEARTBEAT_SECONDS", 10)
BUILDSITE_HEARTBEAT_TIMEOUT = env_int("BUILDSITE_HEARTBEAT_TIMEOUT", 60)
BUILDSITE_LOG_FLUSH_SECONDS = float(env_str("BUILDSITE_LOG_FLUSH_SECONDS") or 0.25)
BUILDSITE_LOG_FLUSH_LINES = env_int("BUILDSITE_LOG_FLUSH_LINES", 500)
BUILDSITE_LOG_MAX_BYTES = env_int("BUILDSITE_LOG_MAX_BYTES", 50 * 1024 * 1024)
BUILDSITE_WORKSPACE_DIR = Path(env_str("BUILDSITE_WORKSPACE_DIR") or DATA_DIR / "workspaces")
# "docker", "local", or "auto" (docker when an engine answers, else local). A
# production install (DATABASE_URL set) never falls back to local by itself.
BUILDSITE_EXECUTOR = env_str("BUILDSITE_EXECUTOR") or ("docker" if DATABASE_URL else "auto")
BUILDSITE_CONTAINER_MEMORY = env_str("BUILDSITE_CONTAINER_MEMORY", "2g")
BUILDSITE_CONTAINER_CPUS = float(env_str("BUILDSITE_CONTAINER_CPUS") or 2)
BUILDSITE_CONTAINER_PIDS = env_int("BUILDSITE_CONTAINER_PIDS", 512)
# Transports git may clone over (git's GIT_ALLOW_PROTOCOL). file:// would let a
# tenant clone any repository on the build node, so production leaves it out.
BUILDSITE_CLONE_PROTOCOLS = env_list("BUILDSITE_CLONE_PROTOCOLS", "https,ssh" if DATABASE_URL else "https,ssh,file")

Q_CLUSTER = {
    "name": env_str("BUILDSITE_Q_NAME", "buildsite"),
    # One q2 worker runs one build at a time, so this is the node's build capacity.
    "workers": env_int("BUILDSITE_Q_WORKERS", 8),
    # A build task may run as long as the longest allowed build plus clean-up.
    "timeout": BUILDSITE_MAX_BUILD_TIMEOUT + 120,
    # retry must exceed timeout: the broker re-delivers a task not acknowledged
    # within `retry` seconds, and a long build still running would then run twice.
    "retry": BUILDSITE_MAX_BUILD_TIMEOUT + 600,
    # A failed build task is final: the build records why; running it again would
    # deploy twice. The reaper, not q2, deals with builds whose worker died.
    "max_attempts": 1,
    "ack_failures": True,
    # Missed schedules (the sweep) are not replayed in a burst after downtime.
    "catch_up": False,
    "save_limit": 1000,
    "label": "Task queue",
    **({"redis": REDIS_URL} if REDIS_URL else {"orm": "default", "poll": 0.1}),
}

REST_FRAMEWORK = {
    # drf-spectacular, with the error envelope listed under every operation.
    "DEFAULT_SCHEMA_CLASS": "builds.api.schema.EnvelopeAutoSchema",
    # Every API error, whatever raised it, answers in the Cloudflare v4 envelope.
    "EXCEPTION_HANDLER": "builds.api.envelope.exception_handler",
}
# Requests per API token (or dashboard session) in DRF's "N/s|m|h|d" form; about the
# 1200 per 5 minutes Cloudflare allows. Counted in the cache above.
BUILDSITE_API_RATE = env_str("BUILDSITE_API_RATE", "240/m")
SPECTACULAR_SETTINGS = {
    "TITLE": "Buildsite API",
    "DESCRIPTION": (
        "Workers Builds compatible API: Cloudflare's v4 paths, field names and envelope, so a script "
        "written for Cloudflare works by changing the base URL and token.\n\n"
        "Authenticate with `Authorization: Bearer <token>` (a token works only for its own account) "
        "or the dashboard session (send the CSRF token on unsafe methods).\n\n"
        "Every response is `{success, errors: [{code, message, source?}], messages, result, result_info}`; "
        "`result_info` (page, per_page, count, total_count, total_pages) on lists, which take `page` and "
        "`per_page`. Another account's object is a 404, a role that lacks the right a 403, too many "
        "requests a 429 with Retry-After. docs/api.md has a walk-through and the error codes."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Only the API under /client/v4/ is described (the dashboard and admin are not APIs).
    "PREPROCESSING_HOOKS": ["builds.api.schema.only_api_paths"],
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "builds.api.schema.describe_path_parameters",
    ],
    # The docs page's assets come from drf-spectacular-sidecar: no CDN needed.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
# Serve files straight from static/ and the apps too, so a checkout works before
# (or without) collectstatic.
WHITENOISE_USE_FINDERS = True

# Behind a TLS-terminating proxy, BUILDSITE_HTTPS=1 turns on every HTTPS protection.
BUILDSITE_HTTPS = env_bool("BUILDSITE_HTTPS")
if BUILDSITE_HTTPS:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
# Webhook payloads may be large (GitHub caps them at 25 MB); the view enforces that.
DATA_UPLOAD_MAX_MEMORY_SIZE = 26 * 1024 * 1024

# Prometheus: every process writes its samples here (prometheus-client reads this
# variable when first imported, which is after settings in every process).
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(DATA_DIR / "metrics"))
Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
# /metrics answers scrapers from these networks, or any caller with this bearer token.
BUILDSITE_METRICS_ALLOW = env_list("BUILDSITE_METRICS_ALLOW", "127.0.0.1/32,::1/128")
BUILDSITE_METRICS_TOKEN = env_str("BUILDSITE_METRICS_TOKEN")

BUILDSITE_RELEASE = env_str("BUILDSITE_RELEASE") or current_release(BASE_DIR)
# JSON lines by default (BUILDSITE_LOG_FORMAT=plain for a terminal).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "json": {"()": "buildsite.structured_logging.JsonFormatter", "release": BUILDSITE_RELEASE},
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": env_str("BUILDSITE_LOG_FORMAT", "json")},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
