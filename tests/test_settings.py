"""Settings come from the environment; production variables pass `check --deploy`."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from scrm.settings import DEVELOPMENT_SECRET_KEY
from tests.settings import TEST_ENVIRONMENT

ROOT = Path(__file__).resolve().parents[1]
# What this test run sets for itself (tests/settings.py): a fresh process must not inherit it.
RUN_ONLY = {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", *TEST_ENVIRONMENT}
STRONG_KEY = secrets.token_urlsafe(50)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in RUN_ONLY}
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_check_deploy_is_clean_with_production_variables():
    result = _manage(
        "check", "--deploy", "--fail-level", "WARNING",
        DEBUG="false", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="scrm.example.com",
        SECRETS_KEY=secrets.token_urlsafe(32),
        DATABASE_URL="postgres://scrm@127.0.0.1:5432/scrm",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        WECOM_API_BASE="https://qyapi.weixin.qq.com/cgi-bin/",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", DEBUG="false", ALLOWED_HOSTS="scrm.example.com", SECRET_KEY="")
    assert result.returncode != 0
    assert "ImproperlyConfigured: With DEBUG off, SECRET_KEY must be a strong" in result.stderr
    assert "it is empty" in result.stderr


def test_debug_is_off_unless_set():
    """Nothing set: DEBUG off, so no known key is accepted and the process refuses to start,
    saying how to make a key, instead of serving tracebacks signed with a published key."""
    result = _manage("check", DATABASE_URL="sqlite:////tmp/scrm-unused.sqlite3")
    assert result.returncode != 0
    assert "With DEBUG off, SECRET_KEY must be a strong random key" in result.stderr
    assert "secrets.token_urlsafe(50)" in result.stderr
    script = "from django.conf import settings as s; print(s.DEBUG, s.SECURE_SSL_REDIRECT)"
    result = _manage("shell", "-c", script, SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="example.com",
                     DATABASE_URL="sqlite:////tmp/scrm-unused.sqlite3")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1].split() == ["False", "True"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (DEVELOPMENT_SECRET_KEY, "it is a published development key"),
        ("django-insecure-" + secrets.token_urlsafe(50), "it is a published development key"),
        ("change-me-to-50-random-characters", "it has 33 characters, fewer than 50"),
        ("abcd" * 20, "it has 4 distinct characters, fewer than 5"),
    ],
)
def test_production_refuses_a_weak_or_known_secret_key(key, reason):
    result = _manage("check", DEBUG="false", ALLOWED_HOSTS="scrm.example.com", SECRET_KEY=key)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert reason in result.stderr
    assert key not in result.stderr  # the message never repeats the key


def test_production_refuses_to_start_without_allowed_hosts():
    result = _manage("check", DEBUG="false", SECRET_KEY=STRONG_KEY, ALLOWED_HOSTS="")
    assert result.returncode != 0
    assert "With DEBUG off, ALLOWED_HOSTS must be set" in result.stderr


def test_development_key_is_accepted_with_debug_on():
    result = _manage("check", DEBUG="true", DATABASE_URL="sqlite:////tmp/scrm-unused.sqlite3")
    assert result.returncode == 0, result.stderr


def test_embedded_default_is_sqlite_eager_sandbox():
    """With none of the production variables set but DEBUG=true, as `make run` on a
    newcomer's machine (this process may run under CI's PostgreSQL and Redis, so a fresh one
    is asked)."""
    if (ROOT / ".env").exists():
        pytest.skip("a local .env sets the defaults of this machine")
    unset = ("DATABASE_URL", "CELERY_BROKER_URL", "CACHE_URL", "LANDING_REDIS_URL",
             "WECOM_API_BASE", "TIME_ZONE", "LANGUAGE_CODE", "DEBUG")  # fmt: skip
    script = (
        "import json; from django.conf import settings as s; "
        "from scrm.wecom.client import SANDBOX_BASE, api_base; "
        "print(json.dumps([s.DATABASES['default']['ENGINE'], s.CELERY_TASK_ALWAYS_EAGER, "
        "api_base() == SANDBOX_BASE, s.WECOM_SANDBOX_ENABLED, s.TIME_ZONE, s.LANGUAGE_CODE]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {*unset, *RUN_ONLY}}
    env["DEBUG"] = "true"
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "django.db.backends.sqlite3", True, True, True, "Asia/Shanghai", "zh-hans",
    ]  # fmt: skip
