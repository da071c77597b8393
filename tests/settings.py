"""The test run's settings: the project's own (scrm/settings.py), read under an environment
that a test server needs. DEBUG is off unless set, as in production, so the run brings its own
key and host names, and plain HTTP (the test client and the live server speak no TLS). What is
set outside wins; worker processes that the integration tests start inherit the same."""

import os

TEST_ENVIRONMENT = {
    "DEBUG": "false",
    "SECRET_KEY": "test-run-only-key-7Kq2vX9mZ4rT1wB8nY3cF6hJ0pL5sD2gA9eU4iO7",
    "ALLOWED_HOSTS": "testserver,localhost,127.0.0.1",
    "SECURE_SSL_REDIRECT": "false",
    "SESSION_COOKIE_SECURE": "false",
    "CSRF_COOKIE_SECURE": "false",
    "SECURE_HSTS_SECONDS": "0",
}
for _name, _value in TEST_ENVIRONMENT.items():
    os.environ.setdefault(_name, _value)

from scrm.settings import *  # noqa: E402, F403
