"""HAAO settings: one module, every value from the environment (see README and .env.example)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from . import env

BASE_DIR = Path(__file__).resolve().parent.parent.parent
if env.boolean("HAAO_READ_DOTENV", True):
    env.load_dotenv(BASE_DIR / ".env")

DEBUG = env.boolean("DEBUG", False)
SECRET_KEY = env.string("SECRET_KEY", required=True)
if len(SECRET_KEY) < 50 and not DEBUG:
    raise ImproperlyConfigured("SECRET_KEY must be at least 50 random characters.")

DATA_DIR = Path(env.string("HAAO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
# SQLite, the embedded broker and collected static files live here; create it on first start.
(DATA_DIR / "static").mkdir(parents=True, exist_ok=True)
# Where `manage.py serve` (make run) listens, and how many worker processes it starts.
SERVE_HOST = env.string("HOST", "127.0.0.1")
SERVE_PORT = env.integer("PORT", 8000, minimum=1)
HAAO_WORKER_CONCURRENCY = env.integer("HAAO_WORKER_CONCURRENCY", 2, minimum=1)
# Where people reach HAAO; by default what `manage.py serve` listens on.
BASE_URL = env.string("HAAO_BASE_URL", f"http://127.0.0.1:{SERVE_PORT}").rstrip("/")
ALLOWED_HOSTS = env.string_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.string_list("CSRF_TRUSTED_ORIGINS", [BASE_URL])
CSRF_FAILURE_VIEW = "haao.views.csrf_failure"
# Origins (scheme, host and port) whose pages may open live sockets (haao/asgi.py).
# On this machine alone, 127.0.0.1 and localhost are the same place (people type either).
_loopback_twin = (BASE_URL.replace("//127.0.0.1", "//localhost", 1)
                  if "//127.0.0.1" in BASE_URL else
                  BASE_URL.replace("//localhost", "//127.0.0.1", 1))
WEBSOCKET_ALLOWED_ORIGINS = list(dict.fromkeys([BASE_URL, _loopback_twin,
                                                *CSRF_TRUSTED_ORIGINS]))

# Fernet keys for secrets at rest, newest first; `manage.py reencrypt_secrets` moves old rows.
ENCRYPTION_KEYS = env.string_list("HAAO_ENCRYPTION_KEYS", [])
if not ENCRYPTION_KEYS:
    raise ImproperlyConfigured(
        "Set the environment variable HAAO_ENCRYPTION_KEYS (comma-separated Fernet keys, newest "
        'first; make one with: python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())").'
    )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.socialaccount.providers.saml",
    "haao",
    "accounts",
    "tickets",
    "agents",
    "policies",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before CommonMiddleware: its slash-appending redirect wins over a JSON 404.
    "haao.api.JSONErrorsUnderAPI",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "haao.urls"
ASGI_APPLICATION = "haao.asgi.application"
WSGI_APPLICATION = "haao.wsgi.application"

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
                "accounts.context_processors.organizations",
            ],
        },
    },
]

# --- Data -----------------------------------------------------------------------------------
DATABASES = {"default": env.database("DATABASE_URL", f"sqlite:///{DATA_DIR / 'haao.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions make SQLite writers queue instead of failing with "locked".
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.integer("DATABASE_CONN_MAX_AGE", 60, minimum=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.url("REDIS_URL", None, schemes=("redis", "rediss", "unix"))
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": REDIS_URL}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "haao.channel_layer.RedisChannelLayer",
                                  "CONFIG": {"hosts": [REDIS_URL]}}}
    CELERY_BROKER_URL = REDIS_URL
else:
    # Embedded: a database cache is shared by every process `make run` starts (rate limits
    # must hold across them); the broker is a SQLite file through kombu's SQL transport, and
    # the channel layer another SQLite file (haao.channel_layer), so workers reach sockets.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache",
                          "LOCATION": "haao_cache"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "haao.channel_layer.SQLiteChannelLayer",
                                  "CONFIG": {"path": str(DATA_DIR / "channels.sqlite3")}}}
    CELERY_BROKER_URL = f"sqla+sqlite:///{DATA_DIR / 'celery-broker.sqlite3'}"

CELERY_TASK_IGNORE_RESULT = True
# Long tasks (a model call, a test run): acknowledge only when done, take one at a time.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.integer("HAAO_TASK_TIME_LIMIT", 1800, minimum=10)
CELERY_TASK_SOFT_TIME_LIMIT = CELERY_TASK_TIME_LIMIT - 5
# Redis re-delivers unacknowledged tasks after the visibility timeout: it must exceed the
# longest task, or a slow task would run twice. (The SQL transport passes its options to
# SQLAlchemy, which knows no such key.)
BROKER_VISIBILITY_TIMEOUT = env.integer("HAAO_BROKER_VISIBILITY_TIMEOUT",
                                        CELERY_TASK_TIME_LIMIT * 2, minimum=1)
if BROKER_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured(
        f"HAAO_BROKER_VISIBILITY_TIMEOUT ({BROKER_VISIBILITY_TIMEOUT} s) must be above "
        f"HAAO_TASK_TIME_LIMIT ({CELERY_TASK_TIME_LIMIT} s): the broker would hand a running "
        "task to a second worker.")
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT} if REDIS_URL else {}
)
CELERY_TASK_ALWAYS_EAGER = env.boolean("HAAO_TASKS_EAGER", False)
# Queues by kind of work (agents/engine/routing.py); a dedicated endpoint adds its own.
CELERY_TASK_DEFAULT_QUEUE = "control"
CELERY_TASK_CREATE_MISSING_QUEUES = True
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- The loop (agents/engine) ---------------------------------------------------------------
# A worker renews its attempt's lease every third of this; an attempt whose lease ran out
# was lost with its worker and is handed to another delivery.
HAAO_ATTEMPT_LEASE_SECONDS = env.integer("HAAO_ATTEMPT_LEASE_SECONDS", 60, minimum=3)
# Deliveries of one attempt step before it is failed as poison.
HAAO_MAX_DELIVERIES = env.integer("HAAO_MAX_DELIVERIES", 3, minimum=1)
HAAO_RECOVERY_INTERVAL = env.integer("HAAO_RECOVERY_INTERVAL", 15, minimum=1)
# Writers' audit rows are sealed after commit: in a Celery worker by the process's sealer
# thread, which gathers HAAO_AUDIT_SEAL_GATHER_MS of commits into one seal (0: each writer
# seals its own, as web requests do); the beat seals what a dead writer left this often. A
# row older than HAAO_AUDIT_SEAL_WINDOW unsealed fails verify_audit_chain and shows in
# /metrics (haao_audit_unsealed_oldest_seconds).
HAAO_AUDIT_SEAL_GATHER_MS = env.integer("HAAO_AUDIT_SEAL_GATHER_MS", 100, minimum=0)
HAAO_AUDIT_SEAL_SWEEP_SECONDS = env.integer("HAAO_AUDIT_SEAL_SWEEP_SECONDS", 5, minimum=1)
HAAO_AUDIT_SEAL_WINDOW = env.integer("HAAO_AUDIT_SEAL_WINDOW", 60, minimum=1)
# A step that waited this long in its queue unclaimed is sent again (its message may be lost).
HAAO_RESEND_AFTER_SECONDS = env.integer("HAAO_RESEND_AFTER_SECONDS", 300, minimum=1)
# How often an open pull request's state is asked of its forge when no webhook told it.
HAAO_PULL_REQUEST_POLL_SECONDS = env.integer("HAAO_PULL_REQUEST_POLL_SECONDS", 300, minimum=5)
HAAO_ENDPOINT_HEALTH_INTERVAL = env.integer("HAAO_ENDPOINT_HEALTH_INTERVAL", 30, minimum=1)
# How long work waits before trying again for a busy or unhealthy endpoint.
HAAO_ENDPOINT_WAIT_SECONDS = env.integer("HAAO_ENDPOINT_WAIT_SECONDS", 3, minimum=1)
# Seconds a local coder may take for one answer.
HAAO_CODER_TIMEOUT = env.integer("HAAO_CODER_TIMEOUT", 300, minimum=5)
# false declares that this machine has no sandbox (as if bubblewrap were missing): checks run
# only for organizations that allow unsandboxed checks, the others' tickets wait for an admin.
HAAO_SANDBOX = env.boolean("HAAO_SANDBOX", True)
# Directories (e.g. a virtualenv) that Definition-of-Done checks see read-only, with their
# `bin` on PATH: the toolchain for projects without a setup command of their own. By default
# the interpreter HAAO runs with (its virtualenv, then the base interpreter); the real
# directories behind each (pyenv, uv, conda) are found by agents.environments.toolchain_paths.
HAAO_CHECK_TOOLCHAIN = [Path(p) for p in env.string_list("HAAO_CHECK_TOOLCHAIN", [])] or [
    Path(p) for p in dict.fromkeys(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix))]
for _toolchain in HAAO_CHECK_TOOLCHAIN:
    if not _toolchain.is_absolute():
        raise ImproperlyConfigured(f"HAAO_CHECK_TOOLCHAIN: {_toolchain} is not an absolute path.")
HAAO_WORKSPACE_ROOT = Path(env.string("HAAO_WORKSPACE_ROOT", str(DATA_DIR / "workspaces")))
if HAAO_ATTEMPT_LEASE_SECONDS >= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("HAAO_ATTEMPT_LEASE_SECONDS must be below HAAO_TASK_TIME_LIMIT.")
CELERY_BEAT_SCHEDULE = {
    "recover-stalled-work": {"task": "haao.recover", "schedule": HAAO_RECOVERY_INTERVAL,
                             "options": {"queue": "control", "expires": HAAO_RECOVERY_INTERVAL}},
    "seal-audit-logs": {"task": "haao.seal_audit_logs", "schedule": HAAO_AUDIT_SEAL_SWEEP_SECONDS,
                        "options": {"queue": "control",
                                    "expires": HAAO_AUDIT_SEAL_SWEEP_SECONDS}},
    "check-endpoint-health": {"task": "haao.check_endpoints",
                              "schedule": HAAO_ENDPOINT_HEALTH_INTERVAL,
                              "options": {"queue": "control",
                                          "expires": HAAO_ENDPOINT_HEALTH_INTERVAL}},
}

# --- Identity -------------------------------------------------------------------------------
AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
     "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/"
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[HAAO] "
ACCOUNT_DEFAULT_HTTP_PROTOCOL = "https" if BASE_URL.startswith("https") else "http"
ACCOUNT_RATE_LIMITS = {
    "login_failed": env.string("HAAO_LOGIN_RATE_LIMIT", "10/m/ip,5/5m/key"),
    "login": "30/m/ip",
    "signup": "20/m/ip",
    "reset_password": "20/m/ip,5/m/key",
    "confirm_email": "1/3m/key",
}
ACCOUNT_SIGNUP_ENABLED = env.boolean("HAAO_OPEN_SIGNUP", True)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "HAAO"
SOCIALACCOUNT_ONLY = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False  # never link by email alone; the adapter decides
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_LOGIN_ON_GET = False
# Organization OpenID providers: allauth's class with signature, nonce and PKCE checks.
SOCIALACCOUNT_PROVIDERS = {"openid_connect": {
    "provider_class": "accounts.sso.oidc.provider.OrgOpenIDConnectProvider"}}
ANONYMOUS_USER_NAME = None  # guardian: no anonymous user row

SESSION_COOKIE_AGE = env.integer("HAAO_SESSION_AGE_SECONDS", 60 * 60 * 12, minimum=300)

# --- Web ------------------------------------------------------------------------------------
HTTPS = env.boolean("HAAO_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env.boolean("HAAO_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = env.integer("HAAO_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_REDIRECT_EXEMPT = [r"^health$"]
# Bearer token Prometheus sends to /metrics (haao/metrics.py); unset, /metrics is a 404.
HAAO_METRICS_TOKEN = env.string("HAAO_METRICS_TOKEN", "").strip()
if HAAO_METRICS_TOKEN and len(HAAO_METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("HAAO_METRICS_TOKEN must be at least 16 random characters.")
if env.boolean("HAAO_BEHIND_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve from the source tree too: no collectstatic needed to run

globals().update(env.email("EMAIL_URL", "consolemail://"))
DEFAULT_FROM_EMAIL = env.string("DEFAULT_FROM_EMAIL", "HAAO <haao@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- API ------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "haao.openapi.AutoSchema",
    # The API speaks JSON only (a form or multipart body answers 415 with the error JSON),
    # refusing unpaired surrogates and deep nesting (haao/text.py).
    "DEFAULT_PARSER_CLASSES": ["haao.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "haao.api.CursorPagination",
    "DEFAULT_FILTER_BACKENDS": ["haao.api.StrictFilterBackend"],
    "EXCEPTION_HANDLER": "haao.api.exception_handler",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HAAO API",
    "DESCRIPTION": "Organizations, projects, tickets and reports of HAAO. Authenticate with "
    "`Authorization: Bearer <token>`; tokens are created per organization in the portal.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Swagger UI and ReDoc from HAAO's own static files: the docs work offline and load
    # nothing from a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums",
                             "haao.openapi.add_links"],
    # Requirements and invitations both have a `status`; name each enum after its model.
    "ENUM_NAME_OVERRIDES": {
        "RequirementStatusEnum": "tickets.models.RequirementStatus",
        "InvitationStatusEnum": ["pending", "accepted", "revoked", "expired"],
        # Members and model endpoints both have a `role`.
        "RoleEnum": "accounts.roles.Role",
        "EndpointRoleEnum": "agents.models.EndpointRole",
        "DeliveryStatusEnum": "agents.models.DeliveryStatus",
        "SetupStatusEnum": "agents.preflight.SetupStatus",
    },
}

# --- Models ---------------------------------------------------------------------------------
ANTHROPIC_API_KEY = env.optional("ANTHROPIC_API_KEY", "CLAUDE_API_KEY")
LMSTUDIO_BASE_URL = env.url("LMSTUDIO_BASE_URL", None, schemes=("http", "https"))
# Private hosts and networks (each optionally with :port) HAAO's servers may call: model
# endpoints, SSO issuers, forges. For every organization, then per organization slug as
# "acme=gpu-box:1234 10.0.0.5:8000;beta=lmstudio:1234". haao/ssrf.py, docs/security.md.
HAAO_ENDPOINT_ALLOWLIST = env.string_list("HAAO_ENDPOINT_ALLOWLIST", [])
HAAO_ENDPOINT_ALLOWLIST_BY_ORG = env.string("HAAO_ENDPOINT_ALLOWLIST_BY_ORG", "")
# Directories a project's repository may be a local path in (tickets.services.projects); the
# demo's sample repository lives in the first one.
HAAO_LOCAL_REPOSITORIES = env.string_list("HAAO_LOCAL_REPOSITORIES", [str(DATA_DIR / "samples")])
# The demo's scripted models (sample_models/demo.py), started by `manage.py serve`
# on 127.0.0.1: the Tech Lead on this port, the coder on the next. `make run` turns them on
# for the parts without a key; the real local model (docs/local-model.md) can be the coder.
HAAO_SAMPLE_MODELS = env.boolean("HAAO_SAMPLE_MODELS", False)
HAAO_SAMPLE_MODELS_PORT = env.integer("HAAO_SAMPLE_MODELS_PORT", 8100, minimum=1)
HAAO_DEMO_LOCAL_MODEL = env.boolean("HAAO_DEMO_LOCAL_MODEL", False)
HAAO_DEMO_LOCAL_MODEL_PORT = env.integer("HAAO_DEMO_LOCAL_MODEL_PORT", 8402, minimum=1)
if HAAO_SAMPLE_MODELS_PORT > 65534 or HAAO_DEMO_LOCAL_MODEL_PORT > 65535:
    raise ImproperlyConfigured("HAAO_SAMPLE_MODELS_PORT and HAAO_DEMO_LOCAL_MODEL_PORT must "
                               "be TCP ports (the sample coder takes the port after the first).")
if (HAAO_SAMPLE_MODELS or HAAO_DEMO_LOCAL_MODEL) and "127.0.0.1" not in HAAO_ENDPOINT_ALLOWLIST:
    # Demo only: the sample models listen on loopback, which endpoints may not reach otherwise;
    # their ports only, not the machine's other services.
    HAAO_ENDPOINT_ALLOWLIST += [f"127.0.0.1:{HAAO_SAMPLE_MODELS_PORT}",
                                f"127.0.0.1:{HAAO_SAMPLE_MODELS_PORT + 1}",
                                f"127.0.0.1:{HAAO_DEMO_LOCAL_MODEL_PORT}"]
if LMSTUDIO_BASE_URL:
    # The operator named this local server: let endpoints reach its host and port (LM Studio
    # on localhost is the common case), and nothing else private.
    _lmstudio = urlsplit(LMSTUDIO_BASE_URL)
    if _lmstudio.hostname:
        _host = f"[{_lmstudio.hostname}]" if ":" in _lmstudio.hostname else _lmstudio.hostname
        HAAO_ENDPOINT_ALLOWLIST.append(
            f"{_host}:{_lmstudio.port or (443 if _lmstudio.scheme == 'https' else 80)}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "filters": {"no_4xx_tracebacks": {"()": "haao.logs.NoTracebackForClientErrors"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain",
                             "filters": ["no_4xx_tracebacks"]}},
    "root": {"handlers": ["console"], "level": env.string("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}},
}
