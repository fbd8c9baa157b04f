"""Job webhooks against a receiver on 127.0.0.1: one signed event per finished job,
retries after a 500, attempts shown on the job, and nothing sent off the allow-list,
to a private address only listed by name, or through a redirect."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from api_support import form, make_clip, wait_for
from server_process import free_port
from streams_support import start_app

SECRET = "s3cret-for-tests"

pytestmark = pytest.mark.timeout(240)


class Receiver:
    """Answers each path with its ``statuses`` in turn (then 200) and keeps every request."""

    def __init__(self, statuses: dict[str, list[int]], redirect_to: str | None = None):
        self.statuses = statuses
        self.redirect_to = redirect_to
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1", port=free_port())

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, dict(request.headers), await request.read()))
        waiting = self.statuses.get(request.path)
        status = waiting.pop(0) if waiting else 200
        headers = {"Location": self.redirect_to} if self.redirect_to and 300 <= status < 400 else None
        return web.Response(status=status, headers=headers)

    def url(self, host: str = "127.0.0.1", path: str = "/hook") -> str:
        return f"http://{host}:{self.server.port}{path}"


def verify(headers: dict[str, str], body: bytes, secret: str = SECRET, tolerance_s: float = 300) -> dict:
    """What a receiver does (the README's recipe): check the signature and the timestamp."""
    timestamp = headers["X-Abrar-Timestamp"]
    expected = "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, headers["X-Abrar-Signature"]), "bad signature"
    assert abs(time.time() - int(timestamp)) < tolerance_s, "stale timestamp"
    return json.loads(body)


def _config(tmp_path, **webhooks):
    from server.config import ServerConfig
    from server.jobs.webhook_config import WebhooksConfig

    return ServerConfig(data_dir=tmp_path / "data", webhooks=WebhooksConfig(**webhooks))


@pytest.fixture(scope="module")
def clip(media, tmp_path_factory):
    return make_clip(media, tmp_path_factory.mktemp("clips") / "tiny.mp4", seconds=0.5, width=160, height=96, fps=10)


async def _submit(http, base, clip, expect: int = 202, **params) -> dict:
    async with http.post(f"{base}/remove-bg-video", params=params, data=form(clip.read_bytes(), clip.name)) as r:
        body = await r.json()
        assert r.status == expect, body
        return body


async def _job(http, base, job_id) -> dict:
    async with http.get(f"{base}/jobs/{job_id}") as resp:
        return await resp.json()


async def test_one_signed_event_per_job_with_retries(runtime, clip, tmp_path):
    receiver = Receiver({"/hook": [500]})
    await receiver.server.start_server()
    server, http, base = await start_app(_config(tmp_path, allowed_hosts="127.0.0.1", secret=SECRET,
                                                 backoff_s=0.3), runtime)
    try:
        done = (await _submit(http, base, clip, callback_url=receiver.url(path="/hook?token=abc")))["job_id"]
        cancelled = (await _submit(http, base, clip, callback_url=receiver.url(path="/other")))["job_id"]
        async with http.delete(f"{base}/jobs/{cancelled}") as resp:
            assert resp.status in (200, 202)

        async def delivered(job_id):
            job = await _job(http, base, job_id)
            return job if job["callback"]["state"] != "pending" else None

        job = await wait_for(lambda: delivered(done), 120, what="the completed job's callback")
        other = await wait_for(lambda: delivered(cancelled), 120, what="the cancelled job's callback")
        await asyncio.sleep(1.5)  # anything more would arrive now

        assert job["status"] == "completed" and other["status"] == "cancelled"
        assert job["callback"]["state"] == "delivered"
        assert [a["status_code"] for a in job["callback"]["attempts"]] == [500, 200]
        assert job["callback"]["attempts"][0]["error"] == "the receiver answered 500"
        assert job["callback"]["url"].endswith("/hook?token=***"), "a token in the URL is shown in clear"
        hooks = [(h, b) for path, h, b in receiver.requests if path == "/hook"]
        assert len(hooks) == 2 and hooks[0][1] == hooks[1][1], "one event, sent twice (500 then 200)"
        event = verify(*hooks[1])
        assert event["event"] == "job.completed" and event["job_id"] == done and event["error"] is None
        assert event["result_url"] == f"/jobs/{done}/result" and hooks[1][0]["X-Abrar-Event"] == "job.completed"
        others = [(h, b) for path, h, b in receiver.requests if path == "/other"]
        assert len(others) == 1 and other["callback"]["state"] == "delivered"
        event = verify(*others[0])
        assert event["event"] == "job.cancelled" and event["result_url"] is None and event["error"]
        with pytest.raises(AssertionError, match="bad signature"):
            verify(*hooks[1], secret="wrong")
    finally:
        await http.close()
        await server.close()
        await receiver.server.close()


async def test_nothing_is_sent_off_the_allow_list(runtime, clip, tmp_path):
    receiver = Receiver({"/hook": [307]}, redirect_to="/elsewhere")
    await receiver.server.start_server()
    # Callbacks off: callback_url is refused.
    server, http, base = await start_app(_config(tmp_path / "off"), runtime)
    try:
        body = await _submit(http, base, clip, expect=403, callback_url=receiver.url())
        assert "ABRAR_WEBHOOK_ALLOWED_HOSTS" in body["error"]["message"]
    finally:
        await http.close()
        await server.close()

    # Only the name "localhost" is listed: a host off the list is refused at once, and the
    # name's loopback address is refused when connecting (a name does not open private ranges).
    server, http, base = await start_app(_config(tmp_path / "name", allowed_hosts="localhost", secret=SECRET,
                                                 backoff_s=0.2, max_attempts=2), runtime)
    try:
        body = await _submit(http, base, clip, expect=403, callback_url=receiver.url("127.0.0.1"))
        assert body["error"]["code"] == "host_not_allowed"
        await _submit(http, base, clip, expect=400, callback_url="ftp://localhost/hook")
        job_id = (await _submit(http, base, clip, callback_url=receiver.url("localhost")))["job_id"]

        async def settled():
            job = await _job(http, base, job_id)
            return job if job["callback"]["state"] != "pending" else None

        job = await wait_for(settled, 120, what="the callback to give up")
        assert job["callback"]["state"] == "failed" and len(job["callback"]["attempts"]) == 2
        assert "non-public address" in job["callback"]["attempts"][0]["error"]
    finally:
        await http.close()
        await server.close()

    # Listed by IP, but the receiver redirects: the redirect is not followed.
    server, http, base = await start_app(_config(tmp_path / "ip", allowed_hosts="127.0.0.1", secret=SECRET,
                                                 max_attempts=1), runtime)
    try:
        job_id = (await _submit(http, base, clip, callback_url=receiver.url()))["job_id"]

        async def settled_ip():
            job = await _job(http, base, job_id)
            return job if job["callback"]["state"] != "pending" else None

        job = await wait_for(settled_ip, 120, what="the redirected callback")
        assert job["callback"]["state"] == "failed"
        assert job["callback"]["attempts"][0]["status_code"] == 307
        assert "redirects are not followed" in job["callback"]["attempts"][0]["error"]
    finally:
        await http.close()
        await server.close()
        await receiver.server.close()
    assert [path for path, _, _ in receiver.requests] == ["/hook"], "only the redirecting URL was asked"


async def test_a_restart_resumes_a_pending_delivery(runtime, clip, tmp_path):
    """The receiver is down while the job finishes and the server restarts: the event is
    delivered once, by the next process, with the failed attempt kept on record."""
    receiver = Receiver({})
    config = _config(tmp_path, allowed_hosts="127.0.0.1", secret=SECRET, backoff_s=60.0)
    server, http, base = await start_app(config, runtime)
    try:
        job_id = (await _submit(http, base, clip, callback_url=receiver.url()))["job_id"]

        async def first_attempt():
            job = await _job(http, base, job_id)
            return job if job["callback"]["attempts"] else None

        job = await wait_for(first_attempt, 120, what="the first (refused) attempt")
        assert job["callback"]["state"] == "pending" and job["callback"]["attempts"][0]["status_code"] is None
    finally:
        await http.close()
        await server.close()  # the 60 s retry never comes in this process

    await receiver.server.start_server()
    server, http, base = await start_app(config, runtime)
    try:
        async def delivered():
            job = await _job(http, base, job_id)
            return job if job["callback"]["state"] == "delivered" else None

        job = await wait_for(delivered, 60, what="the resumed delivery")
        await asyncio.sleep(1.0)
    finally:
        await http.close()
        await server.close()
        await receiver.server.close()
    assert [a["ok"] for a in job["callback"]["attempts"]] == [False, True]
    assert len(receiver.requests) == 1
    assert verify(*receiver.requests[0][1:])["event"] == "job.completed"
