"""Settings come from the environment; production variables pass `check --deploy`."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DEBUG"}}
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
    assert "SECRET_KEY and ALLOWED_HOSTS must be set" in result.stderr


def test_embedded_default_is_sqlite_eager_sandbox():
    """With none of the production variables set, as on a newcomer's machine (this process
    may run under CI's PostgreSQL and Redis, so a fresh one is asked)."""
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
    env = {k: v for k, v in os.environ.items() if k not in unset}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script], cwd=ROOT, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [
        "django.db.backends.sqlite3", True, True, True, "Asia/Shanghai", "zh-hans",
    ]  # fmt: skip
