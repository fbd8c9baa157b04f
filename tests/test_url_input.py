"""url= instead of a file on /remove-bg and /remove-bg-video, fetched from a file server
on 127.0.0.1: the same result as an upload, and the limits (allow-list on every redirect,
size, time, http(s) only, same type checks) answer with clear errors."""
from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from PIL import Image

from api_support import form, make_clip, wait_for
from matting.metrics import mad
from server_process import free_port
from streams_support import start_app

pytestmark = pytest.mark.timeout(240)


class FileServer:
    """Serves a photo, a clip, a text file, redirects, an oversized and a slow answer; logs each request."""

    def __init__(self, photo: bytes, clip: bytes, limit: int):
        self.port = free_port()
        self.seen: list[tuple[str, str]] = []
        files = {"/photo.png": photo, "/clip.mp4": clip, "/notes.txt": b"just text, no image\n" * 10}

        async def handle(request: web.Request) -> web.StreamResponse:
            self.seen.append((request.host.split(":")[0], request.path))
            if request.path in files:
                return web.Response(body=files[request.path])
            if request.path == "/to-photo":
                raise web.HTTPFound("/photo.png")
            if request.path == "/to-localhost":
                raise web.HTTPFound(f"http://localhost:{self.port}/photo.png")
            if request.path == "/huge":  # declared too large
                return web.Response(body=b"\0" * (limit + 1))
            if request.path == "/huge-chunked":  # no length: the stream itself is cut off
                response = web.StreamResponse()
                response.enable_chunked_encoding()
                await response.prepare(request)
                for _ in range(limit // 65536 + 2):
                    await response.write(b"\0" * 65536)
                return response
            if request.path == "/slow":
                await asyncio.sleep(10)
                return web.Response(body=photo)
            raise web.HTTPNotFound()

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        self.server = TestServer(app, host="127.0.0.1", port=self.port)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def _config(tmp_path, **url_input):
    from server.config import ServerConfig
    from server.jobs.config import JobsConfig
    from server.jobs.url_input_config import UrlInputConfig

    return ServerConfig(data_dir=tmp_path / "data", jobs=JobsConfig(max_upload_mb=1.0),
                        url_input=UrlInputConfig(**url_input))


async def test_url_inputs_are_fetched_within_their_limits(runtime, media, tmp_path):
    with Image.open(media / "images" / "p3m_0a78cf02.png") as im:
        small = im.convert("RGB").resize((320, 240))
    buffer = io.BytesIO()
    small.save(buffer, format="PNG")
    clip = make_clip(media, tmp_path / "tiny.mp4", seconds=0.5, width=160, height=96, fps=10)
    files = FileServer(buffer.getvalue(), clip.read_bytes(), limit=1024 * 1024)
    await files.server.start_server()

    # Off by default.
    server, http, base = await start_app(_config(tmp_path / "off"), runtime)
    try:
        async with http.post(f"{base}/remove-bg", params={"url": files.url("/photo.png")}) as resp:
            assert resp.status == 403 and "ABRAR_URL_INPUT_ALLOWED_HOSTS" in (await resp.json())["error"]["message"]
    finally:
        await http.close()
        await server.close()
    assert files.seen == []

    server, http, base = await start_app(_config(tmp_path / "on", allowed_hosts="127.0.0.1", timeout_s=2.0),
                                         runtime)
    try:
        async def remove_bg(url: str) -> tuple[int, bytes | dict]:
            async with http.post(f"{base}/remove-bg", params={"url": url, "model": "rmbg"}) as resp:
                return resp.status, (await resp.read() if resp.status == 200 else await resp.json())

        status, body = await remove_bg(files.url("/to-photo"))  # through a redirect that stays on the list
        assert status == 200, body
        alpha = np.asarray(Image.open(io.BytesIO(body)))[:, :, 3].astype(np.float32) / 255.0
        assert mad(alpha, runtime.cutout(np.asarray(small))) < 2.5  # as for an upload: 8-bit rounding only
        assert ("127.0.0.1", "/photo.png") in files.seen

        expected = {
            "/to-localhost": (403, "host_not_allowed"),  # the redirect leaves the list
            "/notes.txt": (415, "unsupported_media_type"),  # the upload's type check
            "/huge": (413, "payload_too_large"),
            "/huge-chunked": (413, "payload_too_large"),
            "/slow": (422, "url_fetch_failed"),
            "/missing": (422, "url_fetch_failed"),
        }
        for path, (want, code) in expected.items():
            status, body = await remove_bg(files.url(path))
            assert (status, body["error"]["code"]) == (want, code), (path, body)
        for url, want in (("ftp://127.0.0.1/photo.png", 400), ("http://10.9.8.7/photo.png", 403),
                          (files.url("/photo.png", host="localhost"), 403)):
            status, body = await remove_bg(url)
            assert status == want, (url, body)
        async with http.post(f"{base}/remove-bg", params={"url": files.url("/photo.png")},
                             data=form(b"\x89PNG\r\n\x1a\n", "x.png")) as resp:
            assert resp.status == 400  # a file and a URL

        async with http.post(f"{base}/remove-bg-video", params={"url": files.url("/clip.mp4")}) as resp:
            job = await resp.json()
            assert resp.status == 202, job
        assert job["filename"] == "clip.mp4" and job["input"]["width"] == 160

        async def completed():
            async with http.get(f"{base}/jobs/{job['job_id']}") as resp:
                body = await resp.json()
            assert body["status"] != "failed", body["error"]
            return body["status"] == "completed"

        await wait_for(completed, 120, what="the URL job")
    finally:
        await http.close()
        await server.close()
        await files.server.close()
    assert ("localhost", "/photo.png") not in files.seen, "a host off the list was fetched"
