"""Small holes found by hostile testing: each answered with a clear 4xx JSON error (or
handled quietly), on the real app on 127.0.0.1."""
from __future__ import annotations

import asyncio
import json

import pytest

from api_support import api_client, form, make_clip, wait_for
from server.streams.urls import redact

pytestmark = pytest.mark.timeout(180)


async def _raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


async def test_bad_api_key_bytes_and_deep_json_are_4xx(tmp_path):
    async with api_client(None, tmp_path / "data", server={"api_key": "right"}) as client:
        answer = await _raw(client.server.port, b"GET /jobs HTTP/1.1\r\nHost: x\r\nX-API-Key: \xe9\xff\xfe\r\n"
                                                b"Connection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:300]
        assert b'"code": "unauthorized"' in answer

        resp = await client.post("/streams", data="[" * 100_000, headers={"X-API-Key": "right",
                                                                          "Content-Type": "application/json"})
        assert resp.status == 400, await resp.text()
        assert "nested too deeply" in (await resp.json())["error"]["message"]


async def test_missing_result_and_unsatisfiable_ranges(runtime, media, tmp_path):
    clip = make_clip(media, tmp_path / "tiny.mp4", seconds=0.5, width=160, height=96, fps=10)
    async with api_client(runtime, tmp_path / "data") as client:
        resp = await client.post("/remove-bg-video", data=form(clip.read_bytes(), clip.name))
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]

        async def completed():
            job = await (await client.get(f"/jobs/{job_id}")).json()
            assert job["status"] != "failed", job
            return job if job["status"] == "completed" else None
        job = await wait_for(completed, 120, what="the job to complete")
        size = job["result_bytes"]

        for header, why in (("bytes=-0", "empty suffix"), (f"bytes={size}-", "past the end"),
                            ("bytes=5-2", "ends before it starts"), ("bytes=0-1,4-5", "only one range")):
            resp = await client.get(job["result_url"], headers={"Range": header})
            assert resp.status == 416, (header, resp.status)
            assert resp.headers["Content-Range"] == f"bytes */{size}"
            assert why in (await resp.json())["error"]["message"], header
        resp = await client.get(job["result_url"], headers={"Range": "bytes=-10"})
        assert resp.status == 206 and len(await resp.read()) == 10

        # The result file disappears behind the server's back: the job says so.
        (tmp_path / "data" / "jobs" / job_id / "result.webm").unlink()
        resp = await client.get(job["result_url"])
        assert resp.status == 410 and (await resp.json())["error"]["code"] == "result_missing"
        for view in ((await (await client.get(f"/jobs/{job_id}")).json()),
                     (await (await client.get("/jobs")).json())["jobs"][0]):
            assert view["result_url"] is None and view["expired"] is True, view
            assert "missing from the server" in view["error"], view


async def test_recordings_list_no_links_out_of_the_folder(tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "real.webm").write_bytes(b"\x1a\x45\xdf\xa3webm")
    secret = tmp_path / "secret.webm"
    secret.write_text("not for you")
    (recordings / "leak.webm").symlink_to(secret)
    async with api_client(None, tmp_path / "data", server={"recordings_dir": recordings}) as client:
        listed = (await (await client.get("/recordings")).json())["recordings"]
        assert [r["name"] for r in listed] == ["real.webm"], listed
        resp = await client.get("/recordings/leak.webm")
        assert resp.status == 404 and json.loads(await resp.text())["error"]["code"] == "not_found"


@pytest.mark.parametrize("url, shown", [
    ("rtsp://cam:554/user=admin_password=tlJwpbo6_channel=1_stream=0.sdp",
     "rtsp://cam:554/user=***_password=***_channel=1_stream=0.sdp"),
    ("rtsp://cam/live;user=bob;pass=s3cr3t/track1", "rtsp://cam/live;user=***;pass=***/track1"),
    ("rtsp://cam/Streaming/Channels/101", "rtsp://cam/Streaming/Channels/101"),
])
def test_credentials_in_the_url_path_are_redacted(url, shown):
    assert redact(url) == shown
