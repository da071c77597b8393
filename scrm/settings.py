"""Project settings, read from the environment (OS variables win over an optional .env file).

With nothing set, the project runs on the embedded default: SQLite, Celery eager, the sandbox WeCom.
Every variable is listed with a comment in .env.example.
"""

from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# DEBUG is off unless set: an unconfigured deployment never serves tracebacks or a known key.
# The demo (make run) and the test run set DEBUG=true or their own key explicitly.
DEBUG = env.bool("DEBUG", default=False)
# Known to everyone who read this file: accepted only with DEBUG on.
DEVELOPMENT_SECRET_KEY = "dev-only-insecure-key-never-use-in-production-0123456789abcdef"  # noqa: S105
SECRET_KEY = env("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[])


def secret_key_weakness(key: str) -> str | None:
    """Why `key` is too weak to sign sessions and tokens, as Django's check --deploy judges
    it (security.W009); None for a strong key."""
    if not key:
        return "it is empty"
    if key == DEVELOPMENT_SECRET_KEY or key.startswith("django-insecure-"):
        return "it is a published development key"
    if len(key) < 50:
        return f"it has {len(key)} characters, fewer than 50"
    if len(set(key)) < 5:
        return f"it has {len(set(key))} distinct characters, fewer than 5"
    return None


if DEBUG:
    SECRET_KEY = SECRET_KEY or DEVELOPMENT_SECRET_KEY
    ALLOWED_HOSTS = ALLOWED_HOSTS or ["127.0.0.1", "localhost", "testserver"]
else:
    _weakness = secret_key_weakness(SECRET_KEY)
    if _weakness:
        raise ImproperlyConfigured(
            f"With DEBUG off, SECRET_KEY must be a strong random key, and {_weakness}: set "
            "SECRET_KEY to at least 50 random characters, e.g. the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'` "
            "(or DEBUG=true for local development only)."
        )
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "With DEBUG off, ALLOWED_HOSTS must be set (comma-separated host names)."
        )

# Keys that encrypt corp secrets at rest (scrm/wecom/vault.py), comma-separated: the first
# encrypts, all decrypt; rotate with `manage.py rotate_secrets`. Unset: derived from SECRET_KEY,
# and `manage.py check` warns.
SECRETS_KEY = env.list("SECRETS_KEY", default=[])

INSTALLED_APPS = [
    "scrm.admin_site.ScrmAdminConfig",  # django.contrib.admin, with the product first
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from our own static files
    "django_celery_beat",
    "scrm",  # the project itself: cross-app commands (demo, setup_periodic_tasks)
    "scrm.wecom",
    "scrm.wecom.sandbox",
    "contacts",
    "channels_app",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "scrm.middleware.UrlNulMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "scrm.wecom.secret_lookups.SecretLookupMiddleware",  # no ?secret__startswith= oracle
    "scrm.middleware.AdminNumberRangeMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "scrm.urls"
WSGI_APPLICATION = "scrm.wsgi.application"

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

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions and a generous busy timeout keep the threaded dev server and the
    # demo's simulated traffic from tripping over "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE"}
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://scrm")}
if env("CACHE_KEY_PREFIX", default=""):  # deployments (or test runs) sharing one Redis database
    CACHES["default"]["KEY_PREFIX"] = env("CACHE_KEY_PREFIX")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = env("LANGUAGE_CODE", default="zh-hans")
LANGUAGES = [("zh-hans", _("Simplified Chinese")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = env("TIME_ZONE", default="Asia/Shanghai")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))
STATICFILES_DIRS = [BASE_DIR / "static"]
# Files the application writes (report exports under exports/), never served as static files:
# downloads go through views that check who asks. Web and Celery workers must share it.
MEDIA_ROOT = env("MEDIA_ROOT", default=str(BASE_DIR / "media"))

# Security: strict by default once DEBUG is off; a TLS-terminating proxy sets X-Forwarded-Proto.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "rest_framework.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSONParser with JSON nested too deep for Python answered 400, not 500 (scrm.input_guard).
    "DEFAULT_PARSER_CLASSES": [
        "scrm.input_guard.GuardedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # django-filter's backend, whose lists answer an unknown query parameter with a 400.
    "DEFAULT_FILTER_BACKENDS": ["scrm.api_filters.StrictFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "scrm.pagination.BoundedLimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# The OpenAPI 3 schema (/api/schema/) and Swagger UI (/api/docs/): behind the API's own login,
# describing every endpoint whatever the reader may call; the UI's files come from
# drf-spectacular-sidecar through staticfiles (no CDN, and no validator badge fetching the
# schema from outside).
SPECTACULAR_SETTINGS = {
    "TITLE": "渠道活码 SCRM API / Channel-attribution SCRM API",
    "DESCRIPTION": (
        "企业微信渠道活码与来源归因：渠道、渠道费用、活码（发布、暂停、二维码）、扫码、归因、"
        "老带新、客户（客户动态）与转化。登录后使用（会话或 Token：`Authorization: Token <key>`）；"
        "列表按 `limit`（或 `page_size`，至多 1000）/`offset` 分页；"
        "未知的查询参数返回 400 并列出有效参数；日期过滤按企业所在时区的自然日。\n\n"
        "WeCom (企业微信) live codes and first-source attribution: channels, channel costs, "
        "live codes (publish, pause, QR), scans, attributions, referral codes, customers "
        "(timeline) and conversions. Log in first (session, or `Authorization: Token <key>`); "
        "lists are paged with `limit` (or `page_size`, at most 1000) and `offset`; an unknown "
        "query parameter is a 400 listing the valid ones; date filters are local days of the "
        "corp."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SCHEMA_PATH_PREFIX": r"/api/v[0-9]+",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "TAGS": [
        {"name": "root", "description": "API 根：全部接口 / API root: every endpoint"},
        {"name": "channels", "description": "渠道 / Channels"},
        {"name": "channel-costs", "description": "渠道费用 / Channel costs"},
        {"name": "live-codes", "description": "活码 / Live codes"},
        {"name": "scans", "description": "扫码记录 / Scans of tracked links"},
        {"name": "attributions", "description": "归因 / Attributions of adds"},
        {"name": "referral-codes", "description": "老带新推荐码 / Referral codes"},
        {"name": "contacts", "description": "客户与客户动态 / Customers and their timeline"},
        {"name": "conversions", "description": "转化 / Conversions"},
    ],
    # Choice sets that share a field name get a name of their own, not a hash.
    "ENUM_NAME_OVERRIDES": {
        "ConversionKindEnum": "contacts.models.ConversionEvent.Kind",
        "TimelineEventKindEnum": "contacts.models.TimelineEvent.Kind",
    },
}

# Celery: without a broker, tasks run eagerly in-process (the embedded default).
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
if CELERY_TASK_ALWAYS_EAGER:
    # Tasks run in the process; Celery still builds a producer for their serializer, and with
    # no URL kombu warns "No hostname was supplied": the in-memory transport needs none.
    CELERY_BROKER_URL = "memory://localhost/"
CELERY_TASK_EAGER_PROPAGATES = False
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# A publish to a dead broker must not hold the callback's 5-second answer hostage:
# the inbox row is stored and the sweeper re-queues it later.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2}
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# A prefix on every broker key (queues, pidbox): deployments or test runs sharing one Redis
# database then never consume each other's messages.
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if env("CELERY_BROKER_KEY_PREFIX", default=""):
    CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"] = env("CELERY_BROKER_KEY_PREFIX")
# Celery's Django fixup closes every database connection before and after each task, so a
# worker opened a connection per task (2,200 for 2,000 adds in bench/e2e) whatever
# CONN_MAX_AGE said. It never closes them itself here; scrm.celery closes them as a request
# does instead (close_old_connections: CONN_MAX_AGE, broken or mid-transaction connections).
CELERY_DB_REUSE_MAX = 2**62
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # Exact names first. The welcome sweep has a queue of its own, which the welcome workers
    # also consume (-Q welcome,welcome_sweep): taken in turn with the welcome queue, it never
    # waits behind a burst of welcomes or of inbox drains.
    "channels_app.tasks.welcome_sweep_task": {"queue": "welcome_sweep"},
    "*.welcome_*": {"queue": "welcome"},
}

# WeCom gateway
WECOM_API_BASE = env("WECOM_API_BASE", default="")  # empty: the built-in sandbox, in-process
WECOM_SANDBOX_ENABLED = env.bool("WECOM_SANDBOX_ENABLED", default=not WECOM_API_BASE)
WECOM_EVENT_PIPELINE = "scrm.pipeline.handle_event"
# The one step every add goes through, also those that details and calibration find.
CONTACTS_ADD_RECORDER = "scrm.pipeline.add_record"
# The live-code pickers list the top channels of the quality ranking first; analytics ranks,
# channels_app lists: {channel id: rank} for some corps (channels_app.selectors).
CHANNELS_PICKER_RANKING = "analytics.quality.quality_picker_ranks"
WECOM_CALLBACK_MAX_SKEW = env.int("WECOM_CALLBACK_MAX_SKEW", default=600)  # seconds, either way
WECOM_CALLBACK_MAX_BODY = 64 * 1024
WECOM_HTTP_TIMEOUT = env.float("WECOM_HTTP_TIMEOUT", default=10.0)
WECOM_RETRY_ATTEMPTS = env.int("WECOM_RETRY_ATTEMPTS", default=3)
WECOM_RETRY_BASE_DELAY = env.float("WECOM_RETRY_BASE_DELAY", default=0.5)  # seconds, doubled
WECOM_RETRY_MAX_DELAY = env.float("WECOM_RETRY_MAX_DELAY", default=4.0)
WECOM_INBOX_REQUEUE_AFTER = env.int("WECOM_INBOX_REQUEUE_AFTER", default=120)  # seconds
WECOM_INBOX_MAX_ATTEMPTS = env.int("WECOM_INBOX_MAX_ATTEMPTS", default=8)
# With a broker, each web process queues one inbox drain per this many seconds instead of one
# task per event (0: one task per event). It is the most a new event waits for its drain.
WECOM_INBOX_DRAIN_DELAY = env.float("WECOM_INBOX_DRAIN_DELAY", default=0.2)
# A welcome sent before the customer's details are known (behind a burst, see
# channels_app.services.welcome) fills {customer_name} with this (default: empty).
WELCOME_NAME_FALLBACK = env("WELCOME_NAME_FALLBACK", default="")
# PIPL: raw callback bodies are blanked after this many days (parsed fields stay)
WECOM_RAW_BODY_RETENTION_DAYS = env.int("WECOM_RAW_BODY_RETENTION_DAYS", default=90)

# The landing page's Redis store (channels_app.landing_redis): capacity granted from the daily
# counters, slot leases and scans in Redis, scans written to the database in batches every
# LANDING_FLUSH_DELAY seconds. Unset: every visit is written to the database at once (fine for
# a few hundred visits a second).
LANDING_REDIS_URL = env("LANDING_REDIS_URL", default="")
LANDING_REDIS_PREFIX = env("LANDING_REDIS_PREFIX", default="scrm:landing:")  # every key's start
LANDING_FLUSH_DELAY = env.float("LANDING_FLUSH_DELAY", default=0.5)
# Rate limits of the landing page (channels_app.services.landing_limits), counted in the cache
# (CACHE_URL: shared by every process; per process without it); 0 turns one off. New
# assignments per visitor (salted IP hash) and code in each LANDING_RATE_LIMIT_WINDOW seconds:
# a visitor needs one (the same device keeps its member for 30 minutes), a carrier-grade NAT a
# few more. And new assignments per code and minute, whoever asks. Over either: a 429 page.
LANDING_RATE_LIMIT_PER_IP = env.int("LANDING_RATE_LIMIT_PER_IP", default=20)
LANDING_RATE_LIMIT_WINDOW = env.int("LANDING_RATE_LIMIT_WINDOW", default=600)
# ...and in each 24 hours, so the short window cannot be used again and again all day.
LANDING_RATE_LIMIT_PER_IP_24H = env.int("LANDING_RATE_LIMIT_PER_IP_24H", default=60)
LANDING_RATE_LIMIT_PER_CODE = env.int("LANDING_RATE_LIMIT_PER_CODE", default=600)

# Report exports (analytics.exports): a table of more rows than this is written by a Celery
# job (202 and a job URL) instead of in the request; its file is deleted after this many hours.
REPORT_EXPORT_SYNC_MAX_ROWS = env.int("REPORT_EXPORT_SYNC_MAX_ROWS", default=50_000)
REPORT_EXPORT_KEEP_HOURS = env.int("REPORT_EXPORT_KEEP_HOURS", default=24)

# Salt for hashing scan IPs and device keys (no raw IP is stored); rotate to unlink old scans.
SCAN_HASH_SALT = env("SCAN_HASH_SALT", default=SECRET_KEY)
# Behind a reverse proxy, take the client IP from X-Forwarded-For's last hop.
TRUST_X_FORWARDED_FOR = env.bool("TRUST_X_FORWARDED_FOR", default=False)
# Base URL at which the sandbox's QR images are served (demo only)
WECOM_SANDBOX_PUBLIC_URL = env("WECOM_SANDBOX_PUBLIC_URL", default="http://127.0.0.1:8000")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    # urllib3 at DEBUG would log full request URLs, which carry corpsecret or access_token.
    "loggers": {"django.request": {"level": "ERROR"}, "urllib3": {"level": "INFO"}},
}
