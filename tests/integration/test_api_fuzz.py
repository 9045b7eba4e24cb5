"""Fuzz the HTTP API from its own OpenAPI spec with schemathesis, over real HTTP: no 5xx, no
response that breaks the spec (schema, status code, content type)."""

import subprocess

import pytest

from backbeat.api.processes import venv_bin

pytestmark = pytest.mark.integration

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
])


def test_api_fuzzed_from_its_own_spec(web_server, redis, tmp_path):
    argv = [venv_bin("st"), "run", f"{web_server}/openapi.json",
            "--checks", CHECKS, "--max-examples", "40", "--seed", "1",
            "-H", "Authorization: Bearer producer-token-1",
            "--request-timeout", "20", "--report", "junit", "--report-dir", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)  # its cache stays out of the tree
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    assert "No issues found" in tail or "passed" in tail.lower(), tail
