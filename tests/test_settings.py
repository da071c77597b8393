"""Settings come from the environment; production variables pass `check --deploy`."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

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
        DATABASE_URL="postgres://scrm@127.0.0.1:5432/scrm",
        CELERY_BROKER_URL="redis://127.0.0.1:6379/0",
        WECOM_API_BASE="https://qyapi.weixin.qq.com/cgi-bin/",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_refuses_to_start_without_secret_key():
    result = _manage("check", DEBUG="false", ALLOWED_HOSTS="scrm.example.com", SECRET_KEY="")
    assert result.returncode != 0
    assert "SECRET_KEY and ALLOWED_HOSTS must be set" in result.stderr


def test_embedded_default_is_sqlite_eager_sandbox(settings):
    from django.conf import settings as live

    assert os.environ.get("TIME_ZONE", "Asia/Shanghai") == live.TIME_ZONE
    assert os.environ.get("LANGUAGE_CODE", "zh-hans") == live.LANGUAGE_CODE
    if not os.environ.get("CELERY_BROKER_URL"):
        assert live.CELERY_TASK_ALWAYS_EAGER is True
    if not os.environ.get("WECOM_API_BASE"):
        from scrm.wecom.client import SANDBOX_BASE, api_base

        assert api_base() == SANDBOX_BASE
        assert live.WECOM_SANDBOX_ENABLED is True
