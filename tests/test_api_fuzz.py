"""Property test of the upload API from its own OpenAPI spec (schemathesis) on the real server process.

Covers the upload/job endpoints and the server's core paths; the live and RTSP
endpoints (which start sessions and connect to cameras) are left to their own tests.
Schemathesis' pytest plugin is not used (it does not run under this pytest); its
Hypothesis strategies are, one operation at a time.
"""
from __future__ import annotations

import os
import time

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from api_support import make_clip
from server_process import running_server

pytestmark = pytest.mark.timeout(300)

# Keep every generated request cheap. Schemathesis makes real (tiny) PNGs and JPEGs,
# and RMBG costs the same seconds for 1x1 as for 1024x1024 pixels, so a zero-pixel
# image limit turns each into a fast 413 (test_api_images covers the cut-out itself).
# A queue that cannot fill keeps 503 out of the way of the no-5xx check.
ARGS = ["--jobs-max-upload-mb", "0.5", "--jobs-max-image-pixels", "0", "--jobs-queue-size", "1000",
        "--jobs-workers", "1"]
OPERATIONS = [
    ("POST", "/remove-bg"), ("POST", "/remove-bg-video"), ("GET", "/jobs"), ("GET", "/jobs/{job_id}"),
    ("DELETE", "/jobs/{job_id}"), ("GET", "/jobs/{job_id}/result"), ("GET", "/healthz"), ("GET", "/metrics"),
]
PARAMETERLESS = ("/healthz", "/metrics")
EXAMPLES = int(os.environ.get("ABRAR_FUZZ_EXAMPLES", "30"))
# Schema-valid requests these may refuse: random bytes are no photo or video (415),
# and a well-formed Range can lie outside the file (416).
CONTENT_CHECKED = ("/remove-bg", "/remove-bg-video", "/jobs/{job_id}/result")
# Where the spec states which parameter combinations are valid (format with transparency,
# crf with bitrate), so a schema-valid request must pass the parameter checks.
PARAMETER_CHECKED = ("/remove-bg-video",)


@pytest.fixture(scope="module")
def fuzz_server(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    with running_server(d / "data", args=ARGS) as server:
        # One real completed job, so status, download and Range requests are fuzzed on a real file too.
        clip = make_clip(media, d / "tiny.mp4", seconds=0.5, width=160, height=96, fps=10)
        with clip.open("rb") as f:
            resp = requests.post(f"{server.url}/remove-bg-video", files={"file": ("tiny.mp4", f)}, timeout=30)
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["job_id"]
        deadline = time.monotonic() + 120
        while requests.get(f"{server.url}/jobs/{job_id}", timeout=30).json()["status"] != "completed":
            assert time.monotonic() < deadline, "the fixture job did not complete"
            time.sleep(0.2)
        server.job_id = job_id
        yield server


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json", timeout=30)


def _fuzz(api_schema, method, path, mode, **fixed):
    operation = api_schema[path][method]
    excluded = [checks.positive_data_acceptance] if path in CONTENT_CHECKED else []

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case):
        response = case.call(timeout=30)
        assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text[:300])
        if mode == GenerationMode.POSITIVE:
            # parameters the spec allows are never refused as parameters (the body may still be)
            if response.status_code == 400 and path in PARAMETER_CHECKED:
                assert "parameter" not in response.json()["error"]["code"], (case.as_curl_command(), response.text)
            # status, content type, headers and body match the spec
            case.validate_response(response, excluded_checks=excluded)

    run()


@pytest.mark.parametrize("method,path,mode", [
    (method, path, mode) for method, path in OPERATIONS for mode in GenerationMode
    # Without parameters or a body there is nothing to send that breaks the spec.
    if not (mode == GenerationMode.NEGATIVE and path in PARAMETERLESS)])
def test_no_5xx_and_responses_match_the_spec(api_schema, fuzz_server, method, path, mode):
    _fuzz(api_schema, method, path, mode)


@pytest.mark.parametrize("path", ["/jobs/{job_id}", "/jobs/{job_id}/result"])
def test_fuzz_an_existing_job(api_schema, fuzz_server, path):
    _fuzz(api_schema, "GET", path, GenerationMode.POSITIVE, path_parameters={"job_id": fuzz_server.job_id})
    resp = requests.get(f"{fuzz_server.url}/jobs/{fuzz_server.job_id}/result", timeout=30)
    assert resp.status_code == 200 and len(resp.content) > 0
