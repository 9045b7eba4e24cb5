"""Flower, as the Procfile runs it, behind basic auth from the environment (FLOWER_BASIC_AUTH):
its own API lists the run's workers and tasks to whoever has the login, and nothing to anyone
else; the tasks it shows carry job ids only, never the provider key or the secret."""

from __future__ import annotations

import ast

import pytest
import requests

from backbeat.devstack.processes import Proc, flower_argv, free_port, wait_http

pytestmark = pytest.mark.integration

LOGIN = ("ops", "flower-test-password")


def test_flower_shows_the_runs_workers_and_tasks_to_its_login_only(fleet, wait, payload):
    f = fleet("flw", workers=1, concurrency=2)
    port = free_port()
    env = {**f.env, "FLOWER_BASIC_AUTH": ":".join(LOGIN)}
    flower = Proc.start("flower", flower_argv(port), env, f.run_dir)
    f.procs.append(flower)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/healthcheck", 60)

    def get(path: str, auth: tuple[str, str] | None = LOGIN) -> requests.Response:
        return requests.get(f"{base}{path}", auth=auth, timeout=30)

    # Flower hears the worker's events (its heartbeats) before the jobs run, so it sees them all
    wait(lambda: any(w["hostname"].startswith("flw0@")
                     for w in get("/workers?json=1").json()["data"]),
         what="Flower heard the worker's events")
    ids = [f.client.enqueue("add-vocals", payload.vocals(f"Flower {n}"))["id"] for n in range(2)]
    assert {j["state"] for j in f.wait_all(ids)} == {"succeeded"}

    def submits() -> dict[str, dict]:
        answer = get("/api/tasks")
        assert answer.status_code == 200, f"/api/tasks with the login: {answer.status_code}"
        tasks = answer.json()
        return {uuid: t for uuid, t in tasks.items() if t.get("name") == "backbeat.submit"
                and t.get("state") == "SUCCESS"}

    wait(lambda: len(submits()) >= len(ids), what="Flower saw every submit task succeed")
    # the producer's task-sent event reached it too (the message is written by backbeat's own
    # commands, workers/messages.py): each submit shows when it was sent
    assert all(t.get("sent") for t in submits().values()), submits()
    tasks = get("/api/tasks")
    workers = get("/api/workers?refresh=1")
    assert tasks.status_code == workers.status_code == 200
    assert any(name.startswith("flw0@") for name in workers.json()), workers.text[:500]

    # every task Flower shows carries job ids of this run at most: no parameters, no key
    seen_ids = set()
    for uuid, task in tasks.json().items():
        args = ast.literal_eval(task["args"]) if task.get("args") else ()
        assert all(isinstance(a, str) for a in args), (uuid, task["args"])
        seen_ids.update(args)
        assert ast.literal_eval(task["kwargs"] or "{}") == {}, (uuid, task["kwargs"])
    assert seen_ids == set(ids), seen_ids ^ set(ids)
    for answer in (tasks, workers, get("/api/task/info/" + next(iter(submits())))):
        assert f.settings.api_key.reveal() not in answer.text
        assert f.settings.secret.reveal() not in answer.text
        assert LOGIN[1] not in answer.text

    # without the login, or with a wrong one: 401, the UI included
    for path in ("/api/workers", "/api/tasks", "/"):
        assert get(path, auth=None).status_code == 401, path
        assert get(path, auth=(LOGIN[0], "wrong")).status_code == 401, path
