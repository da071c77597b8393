"""Shared fixtures. Our database, cache and broker are real; WeCom is the sandbox."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import Client

from channels_app.landing_redis import RedisStore, landing_redis
from channels_app.selectors import landing_config_cache_clear
from channels_app.services.landing import landing_process_state_clear
from scrm.celery import app as celery_app
from scrm.days import corp_zones_clear
from scrm.wecom.crypto import MessageCrypto
from scrm.wecom.models import Corp
from scrm.wecom.sandbox.models import SandboxCorp
from scrm.wecom.sandbox.simulate import event_xml, sandbox_corp_setup
from scrm.wecom.services import corp_cache_clear, corp_create
from tests.isolation import KEY_PREFIX, RUN_ID, clean_at_exit, redis_prefix_delete

# Live-server request threads must not keep PostgreSQL connections open past the test run.
django_settings.DATABASES["default"]["CONN_MAX_AGE"] = 0
# This run's own names on shared services (tests/isolation.py): a test database, key prefixes;
# set in the environment too, for the integration tests' worker processes.
os.environ.update({
    "CACHE_KEY_PREFIX": KEY_PREFIX,
    "LANDING_REDIS_PREFIX": f"{KEY_PREFIX}:landing:",
    "CELERY_BROKER_KEY_PREFIX": f"{KEY_PREFIX}:",
})  # fmt: skip
if django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    django_settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = (
        f"test_{django_settings.DATABASES['default']['NAME']}_{RUN_ID}"
    )
if django_settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
    django_settings.CACHES["default"]["KEY_PREFIX"] = KEY_PREFIX
    clean_at_exit(django_settings.CACHES["default"]["LOCATION"])
django_settings.LANDING_REDIS_PREFIX = f"{KEY_PREFIX}:landing:"
clean_at_exit(os.environ.get("LANDING_REDIS_URL", ""))
# The broker's keys (queues, pidbox) too.
celery_app.conf.broker_transport_options = {
    **(celery_app.conf.broker_transport_options or {}),
    "global_keyprefix": f"{KEY_PREFIX}:",
}
clean_at_exit(os.environ.get("CELERY_BROKER_URL", ""))
if django_settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A database file of this run's own, as in the demo, not SQLite's shared in-memory test
    # database: its table locks refuse a second concurrent writer at once ("database table is
    # locked"), where a file database waits out its busy timeout (concurrent writes happen:
    # live-server threads, group inserts).
    _test_database_dir = tempfile.mkdtemp(prefix="scrm-test-")
    atexit.register(shutil.rmtree, _test_database_dir, ignore_errors=True)
    django_settings.DATABASES["default"].setdefault("TEST", {})["NAME"] = os.path.join(
        _test_database_dir, "test.sqlite3"
    )
    # A throw-away file: no fsync (a crash loses nothing worth keeping), readers beside a writer.
    django_settings.DATABASES["default"]["OPTIONS"]["init_command"] = (
        "PRAGMA synchronous=OFF; PRAGMA journal_mode=WAL;"
    )


def _cache_clear() -> None:
    """Empty the cache between tests: on Redis only this run's keys (RedisCache.clear() would
    flush the whole database, another run's keys and the developer's with it)."""
    if django_settings.CACHES["default"]["BACKEND"].endswith("RedisCache"):
        redis_prefix_delete(django_settings.CACHES["default"]["LOCATION"], f"{KEY_PREFIX}:")
    else:
        cache.clear()


@pytest.fixture(autouse=True)
def _fast_and_isolated(request: pytest.FixtureRequest, settings) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins
    settings.WECOM_RETRY_BASE_DELAY = 0.0
    settings.WECOM_RETRY_MAX_DELAY = 0.0
    # Many tests visit one landing code from one IP (127.0.0.1) far more often than a visitor
    # would: the landing rate limits are off unless a test turns them on
    # (tests/channels/test_landing_bots_and_limits.py).
    settings.LANDING_RATE_LIMIT_PER_IP = 0
    settings.LANDING_RATE_LIMIT_PER_IP_24H = 0
    settings.LANDING_RATE_LIMIT_PER_CODE = 0
    _cache_clear()
    corp_cache_clear()  # rows vanish between tests; the per-process corp cache must too
    corp_zones_clear()  # and the corps' time zones (scrm.days)
    landing_config_cache_clear()  # and so must the landing page's
    landing_process_state_clear()
    store_redis = landing_redis()
    if store_redis is not None:  # LANDING_REDIS_URL: this run's keys, emptied per test
        redis_prefix_delete(django_settings.LANDING_REDIS_URL, store_redis.prefix)
    # Unit tests run tasks eagerly; integration tests use the real broker and worker.
    eager = request.node.get_closest_marker("integration") is None
    previous = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = eager
    yield
    celery_app.conf.task_always_eager = previous


def _serving_a_request(thread: threading.Thread) -> bool:
    """Whether a live-server thread is inside a request (wsgiref's ServerHandler.run: the
    app, the response and its close), not idle on a kept-alive connection."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None:
        if frame.f_code.co_filename.endswith(os.path.join("wsgiref", "handlers.py")):
            return True
        frame = frame.f_back
    return False


@pytest.fixture(autouse=True)
def _live_server_quiet_at_teardown(request: pytest.FixtureRequest) -> Iterator[None]:
    """A live-server request can outlive its client (a retried delivery gave up on it) and an
    inbox drain runs other requests' events too: wait until no request is being served before
    the database is flushed, or the flush and that work wait on each other's locks."""
    yield
    if "live_server" not in request.fixturenames:
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        _serving_a_request(thread)
        for thread in threading.enumerate()
        if "process_request_thread" in thread.name
    ):
        time.sleep(0.05)


@pytest.fixture
def sandbox_corp(db) -> SandboxCorp:
    return sandbox_corp_setup(corp_id="wwtest0000000001", name="测试企业", members=3)


@pytest.fixture
def corp(sandbox_corp: SandboxCorp) -> Corp:
    return corp_create(
        corp_id=sandbox_corp.corp_id,
        name=sandbox_corp.name,
        secret=sandbox_corp.secret,
        callback_token=sandbox_corp.callback_token,
        encoding_aes_key=sandbox_corp.encoding_aes_key,
    )


@pytest.fixture
def crypto(corp: Corp) -> MessageCrypto:
    return MessageCrypto(corp.callback_token, corp.encoding_aes_key, corp.corp_id)


PostEvent = Callable[..., "object"]


@pytest.fixture
def post_event(
    corp: Corp, crypto: MessageCrypto, client: Client, django_capture_on_commit_callbacks
) -> PostEvent:
    """POST one encrypted change_external_contact event to the callback view, and run what
    it queued on commit (eagerly, as the embedded default does)."""

    def post(change_type: str, create_time: int | None = None, **fields: str):
        xml = event_xml(corp.corp_id, change_type, create_time or int(time.time()), **fields)
        timestamp, nonce = str(int(time.time())), "12345"
        body, signature = crypto.envelope(xml, timestamp=timestamp, nonce=nonce)
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(
                f"/wecom/callback/{corp.corp_id}/?msg_signature={signature}"
                f"&timestamp={timestamp}&nonce={nonce}",
                data=body,
                content_type="text/xml",
            )

    return post


# The landing page's Redis path in tests: LANDING_REDIS_URL when set (this run's keys in it are
# emptied per test). Tests that need it are skipped when it is unset or no Redis answers.
TEST_LANDING_REDIS_URL = os.environ.get("LANDING_REDIS_URL", "")


def landing_redis_enable(settings) -> RedisStore:
    if not TEST_LANDING_REDIS_URL:
        pytest.skip("needs LANDING_REDIS_URL for the landing page's Redis path")
    client = redis.Redis.from_url(TEST_LANDING_REDIS_URL, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"needs Redis at {TEST_LANDING_REDIS_URL} for the landing page's Redis path")
    settings.LANDING_REDIS_URL = TEST_LANDING_REDIS_URL
    client.close()
    store = landing_redis()
    redis_prefix_delete(TEST_LANDING_REDIS_URL, store.prefix)
    return store


@pytest.fixture
def redis_path(settings) -> RedisStore:
    """Landing visits take the Redis path (flushed at once: Celery is eager in unit tests)."""
    return landing_redis_enable(settings)


@pytest.fixture
def database_path(settings) -> None:
    settings.LANDING_REDIS_URL = ""


@pytest.fixture(params=["database", "redis"])
def landing_path(request, settings) -> str:
    """Run a test once per landing path."""
    if request.param == "redis":
        landing_redis_enable(settings)
    else:
        settings.LANDING_REDIS_URL = ""
    return request.param
