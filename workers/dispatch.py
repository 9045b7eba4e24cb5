"""Sending Celery messages for jobs: only the job id travels, never with a countdown."""

from __future__ import annotations

from celery import Celery

from ..config.celery import celery_config
from ..config.settings import Settings, get_settings
from .messages import Message, composer_for, has_publish_hooks
from .redis_conn import client

_apps: dict[tuple[str, str], Celery] = {}


def celery_for(settings: Settings) -> Celery:
    """The process's Celery app when ``settings`` route like the environment's (same broker,
    same key prefix), else one built for them (a client pointed at another deployment)."""
    route = (settings.broker_url, settings.key_prefix)
    env = get_settings()
    if route == (env.broker_url, env.key_prefix):
        from .celery_app import app

        return app
    if route not in _apps:
        other = Celery("backbeat-producer")
        other.config_from_object(celery_config(settings))
        _apps[route] = other
    return _apps[route]


#: a woken job stays leased in the parked set at most this long, in ms, and no longer than
#: the broker's visibility timeout: if its message is lost (a Redis restart within its fsync
#: second, a worker killed as kombu pops it) the pump sends it again afterwards (harmless: a
#: submit claims a job only from ``queued``, and a worker that takes the message replaces the
#: lease by a transition or a new park)
WAKE_LEASE_MS = 300_000


def wake_lease_ms(settings: Settings) -> int:
    """How long a woken job stays leased in the parked set (see WAKE_LEASE_MS)."""
    return min(WAKE_LEASE_MS, int(settings.visibility_timeout_s * 1000))


#: broker priority of a job going back to the front of the line (woken from the parked set: it
#: was waiting for a token, ahead of the backlog, when it was parked). Redis serves 0 first.
FRONT = 0
#: broker priority of every other submit message (a new job joins the back of the line)
NORMAL = 6


def submit_message(settings: Settings, job_id: str, front: bool = False) -> Message | None:
    """``job_id``'s submit message as Redis commands of our own (workers/messages.py), or
    None where only Celery's ``send_task`` may write it (``messages.composer_for``)."""
    composer = composer_for(celery_for(settings))
    if composer is None:
        return None
    return composer.compose(job_id, FRONT if front else NORMAL)


def message_for_create(settings: Settings, job_id: str) -> Message | None:
    """A new job's message for create_job.lua to write with the job (front of the line), or
    None: one ``send_task`` must write (``messages.composer_for``), or a receiver of Celery's
    publish signals in this process (the signals fire only for a message that is published:
    the job's is then sent after it)."""
    if has_publish_hooks():
        return None
    return submit_message(settings, job_id, front=True)


def send_submit(settings: Settings, job_id: str, front: bool = False) -> None:
    """Queue one ``backbeat.submit`` message for ``job_id``, at the back of the line, or with
    ``front`` ahead of every new job (send_submits)."""
    send_submits(settings, [job_id], front)


def send_submits(settings: Settings, job_ids: list[str], front: bool = False) -> None:
    """Queue a ``backbeat.submit`` message for each of ``job_ids``: every message and its
    task-sent event in one pipelined round trip (workers/messages.py), else one Celery
    ``send_task`` each (by name: no task import needed)."""
    if not job_ids:
        return
    app = celery_for(settings)
    composer = composer_for(app)
    priority = FRONT if front else NORMAL
    if composer is None:
        for job_id in job_ids:
            app.send_task("backbeat.submit", args=[job_id], queue="submit", priority=priority)
        return
    pipe = client(settings.broker_url).pipeline(transaction=False)
    messages = [composer.compose(job_id, priority) for job_id in job_ids]
    for message in messages:
        message.push_on(pipe)
    pipe.execute()
    for message in messages:
        message.published()


def restore_message(settings: Settings, tag: str) -> None:
    """Put the unacked message ``tag`` of a dead worker node back at the front of its queue:
    kombu's own restore, which the Redis transport would run only after the visibility
    timeout. A tag already acked or restored is a no-op."""
    with celery_for(settings).connection_for_write() as conn:
        conn.default_channel.qos.restore_by_tag(tag, leftmost=False)
