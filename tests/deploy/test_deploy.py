"""The deployment files agree with the code and with their specifications (fast: no process but
the linters and a few `sh deploy/backbeat-run --print`).

- the Procfile's pools together consume every declared queue and every route's; the ``worker``
  line, Procfile.dev's and ``worker_argv`` (the test fleets) consume them all;
- the Dockerfile passes hadolint; .dockerignore lets in what the image copies and nothing else;
- deploy/compose.yaml validates against the compose specification and runs the Procfile;
- every Kubernetes manifest validates (kubernetes-validate for the core kinds, a vendored
  schema for KEDA's), every Deployment runs a Procfile process, probes and grace periods match
  the code's bounds, the autoscalers watch the broker lists the queues really use;
- every BACKBEAT_* variable named in the deployment files is a setting.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from fnmatch import fnmatch
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from backbeat.config.celery import celery_config
from backbeat.config.settings import DEFAULTS, SETTINGS, Settings
from backbeat.devstack.processes import read_procfile, worker_argv
from backbeat.workers import webhooks
from backbeat.workers.keys import Keys
from backbeat.workers.leases import CYCLE_LEASE_MS
from backbeat.workers.reconcile import POLL_TOKEN_WAIT_S

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / "backbeat.env.example"
#: the Kubernetes version the manifests are validated for (kubernetes-validate's schemas)
K8S_VERSION = "1.30"
#: the files this suite owns the BACKBEAT_* names of (deploy/grafana/ is another matter)
NAMED_IN = [ROOT / "Procfile", ROOT / "Procfile.dev", DOCKERFILE, COMPOSE, ENV_EXAMPLE,
            DEPLOY / "backbeat-run", ROOT / "docs" / "DEPLOY.md", *sorted(K8S.rglob("*.yaml"))]


# -- helpers ---------------------------------------------------------------------------------

def tool(name: str) -> str:
    """A linter's executable beside this interpreter (the venv), else on PATH; missing fails in
    CI (the test dependency group installs it) and skips elsewhere."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        message = f"{name} not installed (the `test` dependency group has it: make setup)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def module(name: str) -> Any:
    """A validator library of the `test` dependency group: missing fails in CI, skips elsewhere."""
    try:
        return __import__(name)
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail(f"{name} not installed (the `test` dependency group has it)")
        pytest.skip(f"{name} not installed (make setup)")


def expand(line: str, env: dict[str, str] | None = None) -> list[str]:
    """A Procfile line as sh would run it with ``env`` (default: nothing set): ``${VAR:-x}``,
    ``${VAR:+x}`` and ``$VAR`` expanded, then split into words."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, word = m["name"] or m["bare"], m["op"], m["word"] or ""
        value = env.get(name, "")
        if op == ":-":
            return value or word
        if op == ":+":
            return word if value else ""
        return value

    pattern = r"\$\{(?P<name>\w+)(?:(?P<op>:[-+])(?P<word>[^}]*))?\}|\$(?P<bare>\w+)"
    return shlex.split(re.sub(pattern, sub, line))


def option(words: list[str], flag: str) -> str | None:
    return words[words.index(flag) + 1] if flag in words else None


def without(words: list[str], *flags: str) -> list[str]:
    """``words`` less each flag in ``flags`` and its value."""
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in flags:
            skip = True
        else:
            out.append(word)
    return out


@cache
def procfile() -> dict[str, str]:
    return read_procfile(ROOT / "Procfile")


def queues_of(line: str) -> list[str]:
    return (option(expand(line), "-Q") or "").split(",")


def pools() -> dict[str, str]:
    """Procfile pool process name -> its queues (the worker-* lines)."""
    return {name: ",".join(queues_of(line)) for name, line in procfile().items()
            if name.startswith("worker-")}


def declared_queues() -> list[str]:
    return [q.name for q in celery_config(Settings())["task_queues"]]


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


@cache
def manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in sorted(K8S.rglob("*.yaml")) for doc in documents(path)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def core_manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p, d in manifests() if not d["apiVersion"].startswith("keda.sh/")]


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in of_kind("Deployment")}


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def seconds(duration: str) -> float:
    """A compose duration ("60s", "1m30s") in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def drain_bound_s(pool: str) -> float:
    """The longest warm shutdown of a pool's node, from the code's own bounds: a submit node
    finishes its calls in flight (connect + read timeouts; a waiting job is handed over at
    once); a reconcile or notify node lets its running cycle end (it starts work for
    CYCLE_LEASE_MS, and its last poll or delivery then runs to its own bound)."""
    call_s = DEFAULTS.connect_timeout_s + DEFAULTS.read_timeout_s
    return {
        "worker-submit": call_s,
        "worker-reconcile": CYCLE_LEASE_MS / 1000 + POLL_TOKEN_WAIT_S + call_s,
        "worker-notify": CYCLE_LEASE_MS / 1000 + webhooks.longest_delivery_ms() / 1000,
        "worker-housekeeping": 30.0,
    }[pool]


# -- the Procfile and the queues ---------------------------------------------------------------

def test_the_pools_cover_every_queue_and_route_and_the_worker_line_consumes_them_all():
    config = celery_config(Settings())
    declared = declared_queues()
    routed = {route["queue"] for route in config["task_routes"].values()}
    by_pool = pools()
    assert routed <= set(declared), "a task is routed to an undeclared queue"
    assert set(by_pool.values()) == set(declared), f"pools {by_pool} vs queues {declared}"
    assert len(by_pool) == len(declared), "two pools share a queue"
    for name, queues in by_pool.items():
        words = expand(procfile()[name])
        # one queue per pool, named after it, with a node name that says the pool (the
        # probes of deploy/k8s and backbeat-run --health ping <queue>@<host>)
        assert name == f"worker-{queues}" and option(words, "-n") == f"{queues}@%h", name
        assert option(words, "--prefetch-multiplier") == "1", name
    assert sorted(queues_of(procfile()["worker"])) == sorted(declared)
    assert sorted(queues_of(read_procfile(ROOT / "Procfile.dev")["worker"])) == sorted(declared)
    assert config["task_create_missing_queues"] is False


def test_every_task_and_every_beat_tick_has_a_route():
    import importlib

    from backbeat.workers.celery_app import TASK_MODULES, app

    for name in TASK_MODULES:  # what a worker imports at start (the app's `include`)
        importlib.import_module(name)
    routes = celery_config(Settings())["task_routes"]
    ours = {name for name in app.tasks if name.startswith("backbeat.")}
    assert ours and ours <= set(routes), ours - set(routes)
    ticks = {entry["task"] for entry in celery_config(Settings())["beat_schedule"].values()}
    assert ticks <= set(routes)


def test_worker_argv_is_the_procfile_worker_line_and_narrows_to_a_pool():
    """The test fleets start workers through worker_argv: it must be the Procfile's line."""
    def normal(words: list[str]) -> list[str]:
        return ["celery", *without(words[1:], "-n")]

    assert normal(worker_argv("x", concurrency=4)) == normal(expand(procfile()["worker"]))
    for name, queue in pools().items():
        line = expand(procfile()[name])
        argv = worker_argv("x", concurrency=int(option(line, "--concurrency")), queues=(queue,))
        assert normal(argv) == normal(line), name


def test_every_procfile_line_is_one_command_the_entrypoint_can_exec():
    """backbeat-run execs each line through env(1): no shell lists, pipes or redirections."""
    for name, line in procfile().items():
        assert not re.search(r"[;&|<>`]|\$\(", line), (name, line)
        # backbeat-run runs under `set -u`: every variable needs its default (or :+)
        bare = re.sub(r"\$\{\w+:[-+][^}]*\}", "", line)
        assert "$" not in bare, (name, line)
    out = subprocess.run(["sh", str(DEPLOY / "backbeat-run"), "--list"], capture_output=True,
                         text=True, env={**os.environ, "PROCFILE": str(ROOT / "Procfile")},
                         check=True).stdout.split()
    assert out == list(procfile())
    for name, line in procfile().items():
        printed = subprocess.run(["sh", str(DEPLOY / "backbeat-run"), "--print", name],
                                 capture_output=True, text=True, check=True,
                                 env={**os.environ, "PROCFILE": str(ROOT / "Procfile")})
        assert printed.stdout.rstrip("\n") == line


# -- the image -----------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes_on_the_dockerfile():
    """Every finding fails, style included; a rule is ignored only inline, with its reason in
    the comment just above the pragma."""
    result = subprocess.run([tool("hadolint"), "--no-color", "--failure-threshold", "style",
                             str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = DOCKERFILE.read_text().splitlines()
    for n, line in enumerate(lines):
        if "hadolint ignore=" in line:
            rules = line.split("=", 1)[1].split(",")
            above = n  # the comment block just above the pragma
            while above > 0 and lines[above - 1].startswith("#"):
                above -= 1
            reason = " ".join(lines[above:n])
            assert len(reason) > 40 and all(r.strip() in reason for r in rules), (
                f"line {n + 1}: say why {rules} is ignored in the comment above it")


def test_the_image_is_slim_multi_stage_non_root_and_runs_the_procfile():
    steps = dockerfile_instructions()
    froms = [args for op, args in steps if op == "FROM"]
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    assert len(froms) >= 2 and froms[-1].split()[0] == "${PYTHON_IMAGE}"
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", args["PYTHON_IMAGE"])
    assert any(op == "COPY" and "--from=build" in a for op, a in steps), "venv from the builder"
    assert "pip wheel" in DOCKERFILE.read_text()
    final = steps[[n for n, (op, _) in enumerate(steps) if op == "FROM"][-1]:]
    user = [a for op, a in final if op == "USER"][-1]
    assert user.split(":")[0] not in ("", "0", "root") and user.split(":")[0].isdigit()
    entrypoint = json.loads([a for op, a in final if op == "ENTRYPOINT"][-1])
    assert entrypoint[-1] == "backbeat-run" and "tini" in entrypoint[0]
    assert json.loads([a for op, a in final if op == "CMD"][-1])[0] in procfile()
    assert any(op == "HEALTHCHECK" and "--health" in a for op, a in final)
    assert any(op == "COPY" and a.split()[-2:] == ["Procfile", "/app/Procfile"] for op, a in final)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last pattern that matches
    the path or one of its parents decides; ``!`` lets back in."""
    parts = path.split("/")
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch(prefix, pattern) or (pattern.startswith("**/") and (
                    fnmatch(prefix, pattern[3:]) or fnmatch(prefix, pattern))):
                ignored = not negate
                break
    return ignored


def test_dockerignore_lets_in_what_the_image_copies_and_nothing_else():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    sources = [src for op, args in dockerfile_instructions() if op == "COPY"
               and "--from=" not in args for src in args.split()[:-1] if not src.startswith("--")]
    assert sources
    for src in sources:
        for path in ([src] if not (ROOT / src).is_dir()
                     else [str(p.relative_to(ROOT)) for p in (ROOT / src).rglob("*.py")]):
            assert not dockerignored(path, patterns), f"{path} is copied but ignored"
    assert not dockerignored("workers/lua/acquire.lua", patterns)
    for path in (".venv/bin/python", ".git/config", "tests/conftest.py", "deploy/backbeat.env",
                 "docs/DESIGN.md", "workers/__pycache__/app.cpython-311.pyc", ".run/x.log"):
        assert dockerignored(path, patterns), f"{path} would be sent to the build"


# -- compose -------------------------------------------------------------------------------------

def test_compose_validates_against_the_compose_specification():
    result = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
                             str(COMPOSE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_runs_the_procfile_as_a_scalable_fleet():
    services = compose()["services"]
    assert {"redis", "web", "worker-submit", "worker-reconcile", "beat", "flower",
            "sim"} <= set(services)
    pool_services = {n: s for n, s in services.items() if n.startswith("worker-")}
    covered = {pools()[s["command"][0]] for s in pool_services.values()}
    assert covered == set(declared_queues()), "the compose pools leave a queue unconsumed"
    for name, service in services.items():
        if name == "redis":
            continue
        if name == "sim":
            assert service["profiles"] == ["sim"] and service["command"][:2] == ["backbeat", "sim"]
            assert "0.0.0.0" in service["command"]  # reachable from the other containers
            continue
        assert "profiles" not in service, name
        assert service["command"] == [name] and name in procfile(), name
        assert service["env_file"] == [{"path": "backbeat.env", "required": True}], name
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", name
        if name.startswith("worker-"):  # `--scale` needs no fixed name and no host port
            assert "container_name" not in service and "ports" not in service, name
            k8s_grace = deployments()[name]["spec"]["template"]["spec"][
                "terminationGracePeriodSeconds"]
            assert seconds(service["stop_grace_period"]) == k8s_grace >= drain_bound_s(name)
    redis = services["redis"]
    assert "./redis.conf:/usr/local/etc/redis/redis.conf:ro" in redis["volumes"]
    assert redis["command"][:2] == ["redis-server", "/usr/local/etc/redis/redis.conf"]
    assert "appendonly yes" in (DEPLOY / "redis.conf").read_text()
    assert "ports" not in redis  # the compose network only


def test_the_env_example_holds_placeholders_and_what_each_process_needs():
    env = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines()
               if line and not line.startswith("#"))
    for key in ("BACKBEAT_API_KEY", "BACKBEAT_SECRET", "BACKBEAT_API_TOKENS"):
        assert env[key].startswith("replace-"), key
    assert env["FLOWER_BASIC_AUTH"].split(":")[1].startswith("replace-")
    Settings.from_env(env)  # the example is a valid configuration (prod: secret present)
    assert "backbeat.env" in (DEPLOY / ".gitignore").read_text().split()


# -- Kubernetes ----------------------------------------------------------------------------------

def test_every_core_manifest_validates_against_the_kubernetes_schemas():
    kubernetes_validate = module("kubernetes_validate")
    module("kubernetes_validate.utils")
    versions = [v for v in kubernetes_validate.utils.all_versions()
                if v == K8S_VERSION or v.startswith(K8S_VERSION + ".")]
    assert versions, f"kubernetes-validate ships no {K8S_VERSION} schemas"
    assert core_manifests()
    for path, doc in core_manifests():
        try:
            kubernetes_validate.validate(doc, versions[-1], strict=True)
        except Exception as exc:  # noqa: BLE001 - the path and the object name say which
            pytest.fail(f"{path.name}: {doc['kind']} {doc['metadata']['name']}: {exc}")


def test_the_keda_objects_validate_against_the_vendored_crd_schema():
    jsonschema = module("jsonschema")
    schema = json.loads((Path(__file__).parent / "keda-schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    keda = [(p, d) for p, d in manifests() if d["apiVersion"].startswith("keda.sh/")]
    assert {d["kind"] for _, d in keda} == {"ScaledObject", "TriggerAuthentication"}
    for path, doc in keda:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(doc)]
        assert not errors, f"{path.name} {doc['metadata']['name']}: {errors}"
    # and the schema is no rubber stamp: a misspelt field fails
    broken = json.loads(json.dumps(keda[-1][1]))
    broken["spec"]["maxReplicaCout"] = 3
    assert list(validator.iter_errors(broken))


def test_every_deployment_runs_a_procfile_process_of_one_image():
    images = set()
    for name, deployment in deployments().items():
        c = container(deployment)
        assert "command" not in c, f"{name}: leave the entrypoint (backbeat-run) to the image"
        assert c["args"] == [name] and name in procfile(), name
        images.add(c["image"])
        pod = deployment["spec"]["template"]["spec"]
        assert pod["enableServiceLinks"] is False, name  # no FLOWER_PORT=tcp://... for Flower
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert deployment["metadata"]["namespace"] == "backbeat", name
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items(), name
    assert len(images) == 1
    covered = {pools()[name] for name in deployments() if name.startswith("worker-")}
    assert covered == set(declared_queues()), "the Kubernetes pools leave a queue unconsumed"


def test_beat_is_one_replica_replaced_with_recreate_and_web_is_ready_on_healthz():
    beat = deployments()["beat"]["spec"]
    assert beat["replicas"] == 1 and beat["strategy"]["type"] == "Recreate"
    web = container(deployments()["web"])
    assert web["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert "httpGet" not in web["livenessProbe"]  # a Redis outage must not restart web


def test_worker_probes_ping_their_own_node_and_grace_covers_the_drain():
    for name in pools():
        deployment = deployments()[name]
        command = container(deployment)["livenessProbe"]["exec"]["command"]
        assert command[:2] == ["sh", "-c"], name  # $HOSTNAME needs a shell
        words = command[2].split()
        node = option(expand(procfile()[name]), "-n").replace("%h", "$HOSTNAME")
        assert words[1:] == ["celery", "-A", "backbeat.workers.app", "inspect", "ping", "-d",
                             node, "--timeout", "10"], name
        probe = container(deployment)["livenessProbe"]
        assert probe["timeoutSeconds"] > 10 and probe["periodSeconds"] >= 30, name
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert grace >= drain_bound_s(name), (name, grace, drain_bound_s(name))


def test_each_pool_has_a_disruption_budget_and_each_service_reaches_its_pods():
    budgets = of_kind("PodDisruptionBudget")
    for name in pools():
        labels = deployments()[name]["spec"]["template"]["metadata"]["labels"]
        mine = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items()
                <= labels.items()]
        assert len(mine) == 1 and mine[0]["spec"]["maxUnavailable"] == 1, name
    for service in of_kind("Service"):
        selected = [d for d in deployments().values() if service["spec"]["selector"].items()
                    <= d["spec"]["template"]["metadata"]["labels"].items()]
        assert len(selected) == 1, service["metadata"]["name"]
        ports = {p["name"] for p in container(selected[0])["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_the_autoscalers_watch_the_broker_lists_of_their_queues():
    prefix = of_kind("ConfigMap")[0]["data"]["BACKBEAT_KEY_PREFIX"]
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in of_kind("ScaledObject")}
    assert set(scaled) == {"worker-submit", "worker-reconcile"}
    lists = {name: [t["metadata"]["listName"] for t in s["spec"]["triggers"]]
             for name, s in scaled.items()}
    # every priority list of submit (new jobs go to step 6, woken jobs to 0), summed
    assert sorted(lists["worker-submit"]) == sorted(Keys(prefix).submit_queues)
    names = [t["name"] for t in scaled["worker-submit"]["spec"]["triggers"]]
    formula = scaled["worker-submit"]["spec"]["advanced"]["scalingModifiers"]["formula"]
    assert sorted(re.findall(r"\w+", formula)) == sorted(names) and "+" in formula
    assert lists["worker-reconcile"] == [f"{prefix}:celery:reconcile"]
    auths = {a["metadata"]["name"]: a for a in of_kind("TriggerAuthentication")}
    secrets = {s["metadata"]["name"]: s["stringData"] for s in of_kind("Secret")}
    for s in scaled.values():
        assert s["spec"]["scaleTargetRef"]["name"] in deployments()
        # the autoscaler owns the count: an apply must not reset it
        assert "replicas" not in deployments()[s["spec"]["scaleTargetRef"]["name"]]["spec"]
        for trigger in s["spec"]["triggers"]:
            assert trigger["type"] == "redis"
            auth = auths[trigger["authenticationRef"]["name"]]
            for ref in auth["spec"]["secretTargetRef"]:
                assert ref["key"] in secrets[ref["name"]], ref
    for hpa in of_kind("HorizontalPodAutoscaler"):
        assert hpa["spec"]["scaleTargetRef"]["name"] in scaled  # the same pools
        for metric in hpa["spec"]["metrics"]:  # families GET /metrics exports
            name = metric["external"]["metric"]["name"]
            assert f'"{name}"' in (ROOT / "workers" / "status.py").read_text(), name


def test_flower_gets_its_login_from_a_secret_of_its_own():
    flower = container(deployments()["flower"])
    env = {e["name"]: e for e in flower["env"]}
    ref = env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    secret = next(s for s in of_kind("Secret") if s["metadata"]["name"] == ref["name"])
    assert ref["key"] in secret["stringData"]
    for name, deployment in deployments().items():
        if name != "flower":
            assert "FLOWER_BASIC_AUTH" not in json.dumps(deployment), name
    for s in of_kind("Secret"):
        for key, value in s["stringData"].items():
            assert "REPLACE_ME" in value or key == "address", (s["metadata"]["name"], key)


# -- settings ------------------------------------------------------------------------------------

def test_every_backbeat_variable_the_deployment_files_name_is_a_setting():
    known = {s.env for s in SETTINGS}
    named: dict[str, set[str]] = {}
    for path in NAMED_IN:
        assert path.exists(), path
        for word in re.findall(r"\bBACKBEAT_[A-Z0-9_]*[A-Z0-9]", path.read_text()):
            named.setdefault(word, set()).add(str(path.relative_to(ROOT)))
    # and every key a manifest or compose hands a process as a variable
    for _, doc in manifests():
        for key in [*doc.get("data", {}), *doc.get("stringData", {})]:
            if key.startswith("BACKBEAT_"):
                named.setdefault(key, set()).add(doc["metadata"]["name"])
    for name, service in compose()["services"].items():
        for key in service.get("environment", {}):
            if key.startswith("BACKBEAT_"):
                named.setdefault(key, set()).add(f"compose {name}")
    assert named, "no BACKBEAT_ variable found: the scan is broken"
    unknown = {word: sorted(where) for word, where in named.items() if word not in known}
    assert not unknown, f"not in config/settings.py SETTINGS: {unknown}"
