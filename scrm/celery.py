import os
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "scrm.settings")

app = Celery("scrm")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _database_connections_recycle(task: Any = None, **_: Any) -> None:
    """Around each task, what Django does around each request: keep the connection while it
    is healthy and younger than CONN_MAX_AGE, close it otherwise (an error left it unusable,
    a task left a transaction open). Celery's own closing is off (CELERY_DB_REUSE_MAX)."""
    if task is not None and getattr(task.request, "is_eager", False):
        return  # inside the caller's request or transaction: not ours to close
    from django.db import close_old_connections

    close_old_connections()
