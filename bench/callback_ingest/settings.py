"""The project's settings with a URLconf that adds the benchmark's baseline view.

Everything else (middleware, database, broker, security) is exactly what production runs, so the
baseline and the callback pay the same framework cost.
"""

from scrm.settings import *  # noqa: F403

ROOT_URLCONF = "bench.callback_ingest.urls"
