"""Fuzz the HTTP API from its own OpenAPI spec with schemathesis, over real HTTP: no 5xx, no
response that breaks the spec (schema, status code, content type)."""

import subprocess

import pytest
import requests

from backbeat.devstack.processes import venv_bin

pytestmark = pytest.mark.integration

CHECKS = ",".join([
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
])


def test_api_fuzzed_from_its_own_spec(web_server, redis, tmp_path, monkeypatch):
    import backbeat.api.routes_status as status_routes

    # the session's web server runs in this process: its status streams end after 0.2 s
    # (not a minute each), so the fuzzer's requests to /v1/status/stream return quickly
    monkeypatch.setattr(status_routes, "STREAM_S", 0.2)
    argv = [venv_bin("st"), "run", f"{web_server}/openapi.json",
            "--checks", CHECKS, "--max-examples", "30", "--seed", "1",
            "-H", "Authorization: Bearer producer-token-1",
            "--request-timeout", "20", "--report", "junit", "--report-dir", str(tmp_path)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600,
                         stdin=subprocess.DEVNULL, cwd=tmp_path)  # its cache stays out of the tree
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    assert "No issues found" in tail or "passed" in tail.lower(), tail


#: every field the provider docs define per job type, except callBackUrl (backbeat builds it)
PROVIDER_FIELDS = {"uploadUrl", "title", "negativeTags", "model", "vocalGender", "styleWeight",
                   "weirdnessConstraint", "audioWeight"}
PER_TYPE = {"AddInstrumentalParams": PROVIDER_FIELDS | {"tags"},
            "AddVocalsParams": PROVIDER_FIELDS | {"prompt", "style"}}


def test_spec_publishes_the_params_of_each_job_type(web_server):
    """Given /openapi.json, expect the request body as oneOf per job type with a ``type``
    discriminator, and each type's params with every provider field, so the fuzzer reaches
    them: models enumerated, weights bounded in steps of 0.01, text limited per model."""
    spec = requests.get(f"{web_server}/openapi.json", timeout=30).json()
    body = spec["paths"]["/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]
    schema, comps = body["schema"], spec["components"]["schemas"]
    mapping = schema["discriminator"]["mapping"]
    assert schema["discriminator"]["propertyName"] == "type"
    assert sorted(mapping) == ["add-instrumental", "add-vocals"]
    assert [one["$ref"] for one in schema["oneOf"]] == list(mapping.values())
    for job_type, ref in mapping.items():
        job = comps[ref.rsplit("/", 1)[1]]
        assert job["properties"]["type"]["enum"] == [job_type]
        params_ref = job["properties"]["params"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
        params = comps[params_ref]
        assert set(params["properties"]) == PER_TYPE[params_ref]
        assert params["additionalProperties"] is False
        assert set(params["required"]) == PER_TYPE[params_ref] - {
            "model", "vocalGender", "styleWeight", "weirdnessConstraint", "audioWeight"}
        assert params["properties"]["model"]["enum"] == ["V4_5PLUS", "V5"]
        assert params["properties"]["title"]["maxLength"] == 80
        weight = params["properties"]["audioWeight"]
        assert (weight["minimum"], weight["maximum"], weight["multipleOf"]) == (0, 1, 0.01)
