"""Bad input answers a clear 4xx JSON error, leaves nothing behind and loses nothing."""
from __future__ import annotations

import asyncio
import io
import os
import struct
import subprocess
import zlib

import pytest
from aiohttp import ClientSession, ClientTimeout
from yarl import URL

from api_support import api_client, form, make_clip
from server.jobs.state import JOBS

pytestmark = pytest.mark.timeout(240)

LIMITS = {"max_upload_mb": 1.0, "max_video_seconds": 3.0, "max_video_pixels": 320 * 240,
          "max_image_pixels": 4_000_000, "workers": 1, "queue_size": 1, "image_workers": 1, "image_queue_size": 0}
BOUNDARY = "testboundary7MA4YWxk"
MULTIPART = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


@pytest.fixture(scope="module")
def files(media, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    jpeg = (media / "images" / "comp_p3m_0a78cf02_porch.jpg").read_bytes()
    audio_only = d / "tone.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", str(audio_only)], check=True, timeout=60)
    audio_mkv = d / "tone.mkv"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "libopus", str(audio_mkv)], check=True, timeout=60)
    small = make_clip(media, d / "small.mp4", seconds=1, width=160, height=96, fps=10)
    return {
        "jpeg": jpeg,
        "truncated_jpeg": jpeg[: len(jpeg) // 3],
        "corrupt_png": b"\x89PNG\r\n\x1a\n" + os.urandom(2000),
        "bomb_png": _png_header_only(60000, 60000),
        "text": b"hello, this is not an image\n" * 10,
        "audio_only": audio_only.read_bytes(),
        "audio_mkv": audio_mkv.read_bytes(),
        "small": small.read_bytes(),
        "truncated_mp4": small.read_bytes()[:4000],
        "big_video": make_clip(media, d / "big.mp4", seconds=0.3, fps=10).read_bytes(),  # 640x360
        "long_video": make_clip(media, d / "long.mp4", seconds=4, width=160, height=96, fps=5).read_bytes(),
    }


def _png_header_only(w: int, h: int) -> bytes:
    """A PNG declaring w x h pixels with a tiny body: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


async def _error(resp, status: int, *words: str) -> dict:
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    err = (await resp.json())["error"]
    assert err["message"] and err["code"]
    for w in words:
        assert w.lower() in err["message"].lower(), err["message"]
    return err


def _uploads_left(tmp_path) -> list[str]:
    data = tmp_path / "data"
    return sorted(p.name for p in (data / "uploads").iterdir()) + sorted(p.name for p in (data / "jobs").iterdir())


async def test_image_bad_input(runtime, files, tmp_path):
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        def post(data, **params):
            return client.post("/remove-bg", data=data, params=params)

        await _error(await post(form(files["corrupt_png"], "x.png")), 400, "image")
        await _error(await post(form(files["truncated_jpeg"], "x.jpg")), 400, "truncated")
        await _error(await post(form(files["text"], "x.png")), 415, "jpeg, png or webp")
        await _error(await post(form(files["small"], "x.mp4")), 415)
        await _error(await post(form(files["bomb_png"], "bomb.png")), 413, "limit")
        await _error(await client.post("/remove-bg", data=files["jpeg"], headers={"Content-Type": "image/jpeg"}),
                     415, "multipart/form-data")
        await _error(await post(form(files["jpeg"], "x.jpg", field="image")), 400, "'image'")
        await _error(await client.post("/remove-bg", data=_multipart([]), headers=MULTIPART),
                     400, "missing form field 'file'")
        await _error(await post(form(b"", "x.jpg")), 400, "empty")
        await _error(await client.post("/remove-bg", data=_multipart([("file", files["text"])] * 2), headers=MULTIPART),
                     400, "exactly one")
        await _error(await post(form(os.urandom(1024 * 1024 + 1), "big.jpg")), 413, "1.0 MiB")
        await _error(await client.post("/remove-bg", data=_chunked_upload(2 * 1024 * 1024), headers=MULTIPART),
                     413, "limit")
        await _error(await post(form(files["jpeg"], "x.jpg"), size="big"), 400, "unknown query parameter", "size")
        await _error(await post(form(files["jpeg"], "x.jpg"), background_type="purple"), 400, "background_type")
        await _error(await post(form(files["jpeg"], "x.jpg"), format="gif"), 400, "format")
        await _error(await client.get("/remove-bg"), 405)
    assert _uploads_left(tmp_path) == []


async def test_video_bad_input(runtime, files, tmp_path):
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        def post(data, **params):
            return client.post("/remove-bg-video", data=data, params=params)

        await _error(await post(form(b"", "empty.mp4")), 400, "empty")
        await _error(await post(form(files["audio_only"], "tone.m4a")), 415, "no video stream")
        await _error(await post(form(files["audio_mkv"], "tone.mkv")), 415, "no video stream")
        await _error(await post(form(files["jpeg"], "photo.jpg")), 415, "/remove-bg")
        await _error(await post(form(files["text"], "notes.txt")), 415, "video")
        await _error(await post(form(os.urandom(50_000), "noise.mp4")), 415, "video")
        await _error(await post(form(files["truncated_mp4"], "cut.mp4")), 415, "video")
        await _error(await post(form(files["big_video"], "big.mp4")), 413, "640x360")
        await _error(await post(form(files["long_video"], "long.mp4")), 413, "4.0 s")
        await _error(await post(form(files["small"], "x.mp4"), format="mp4"), 400, "transparency")
        await _error(await post(form(files["small"], "x.mp4"), crf="20", bitrate="1M"), 400, "not both")
        await _error(await post(form(files["small"], "x.mp4"), crf="99"), 400, "crf")
        await _error(await post(form(files["small"], "x.mp4"), keep_audio="maybe"), 400, "keep_audio")
        await _error(await post(form(files["small"], "x.mp4"), background_type="transparent", fps="60"),
                     400, "unknown query parameter")
        await _error(await client.post("/remove-bg-video", data=b"x" * 100, headers={"Content-Type": "video/mp4"}),
                     415)
        await _error(await client.get("/jobs", params={"limit": "0"}), 400, "limit")
        await _error(await client.get("/jobs", params={"status": "done"}), 400, "status")
        await _error(await client.get("/jobs", params={"page": "2"}), 400, "unknown")
        listing = await (await client.get("/jobs")).json()
    assert listing["total"] == 0
    assert _uploads_left(tmp_path) == []


async def test_unknown_and_malicious_job_ids(runtime, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for clients")
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        unknown = "0123456789abcdef" * 2
        for method, path in [("GET", f"/jobs/{unknown}"), ("GET", f"/jobs/{unknown}/result"),
                             ("DELETE", f"/jobs/{unknown}")]:
            await _error(await client.request(method, path), 404, unknown)
        attempts = [
            "/jobs/..%2f..%2fsecret.txt", "/jobs/..%2F..%2Fsecret.txt/result", "/jobs/..%2fjobs.sqlite3/result",
            "/jobs/%2e%2e/result", "/jobs/%2e%2e%2f%2e%2e%2fsecret.txt/result", "/jobs/..%5c..%5csecret.txt",
            "/jobs/" + "A" * 32, "/jobs/" + "a" * 31, "/jobs/" + "a" * 33 + "/result", "/jobs/%00" + "a" * 29,
            "/jobs/" + "a" * 30 + "%2e%2e",
        ]
        base = client.make_url("")
        async with ClientSession(timeout=ClientTimeout(total=30)) as raw:
            for path in attempts:
                for method in ("GET", "DELETE"):
                    url = URL(f"{str(base).rstrip('/')}{path}", encoded=True)  # sent as written, not normalised
                    async with raw.request(method, url) as resp:
                        body = await resp.read()
                        allowed = (400, 404, 405) if path.endswith("/result") and method == "DELETE" else (400, 404)
                        assert resp.status in allowed, (method, path, resp.status, body)
                        assert b"SQLite format" not in body and b"not for clients" not in body
        assert (tmp_path / "data" / "jobs.sqlite3").is_file() and secret.read_text() == "not for clients"


async def test_submissions_over_the_queue_limit(runtime, files, tmp_path):
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        results = await asyncio.gather(*[
            client.post("/remove-bg-video", data=form(files["small"], f"clip{i}.mp4"),
                        params={"background_type": "black"}) for i in range(6)])
        accepted = [await r.json() for r in results if r.status == 202]
        refused = [r for r in results if r.status != 202]
        print(f"\n6 concurrent submissions, queue size 1: {len(accepted)} accepted, {len(refused)} refused")
        assert accepted and refused
        for r in refused:
            err = await _error(r, 503, "queue is full")
            assert int(r.headers["Retry-After"]) > 0 and err["code"] == "queue_full"
        listing = await (await client.get("/jobs")).json()
        assert sorted(j["id"] for j in listing["jobs"]) == sorted(j["job_id"] for j in accepted)
        metrics = await (await client.get("/metrics")).text()
        assert f'abrar_upload_rejected_total{{queue="jobs"}} {float(len(refused))}' in metrics
        for job in accepted:
            assert (await client.delete(job["status_url"])).status in (200, 202)


async def test_images_over_the_concurrency_limit(runtime, files, tmp_path):
    """With room for one image, a second image arriving while the first is being cut out gets
    503; one still uploading takes no slot (tests/test_slow_clients.py)."""
    async with api_client(runtime, tmp_path / "data", **LIMITS) as client:
        state = client.server.app[JOBS]
        first = asyncio.create_task(client.post("/remove-bg", data=form(files["jpeg"], "a.jpg")))
        for _ in range(400):
            if state.images_pending:
                break
            await asyncio.sleep(0.05)
        assert state.images_pending == 1
        second = await client.post("/remove-bg", data=form(files["jpeg"], "b.jpg"))
        await _error(second, 503, "too many images")
        assert int(second.headers["Retry-After"]) > 0
        assert (await first).status == 200
        assert state.images_pending == 0


def _multipart(parts: list[tuple[str, bytes]]) -> bytes:
    """A hand-made multipart body (send with MULTIPART headers): any fields, or none."""
    out = io.BytesIO()
    for name, data in parts:
        out.write(f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


async def _chunked_upload(total: int):
    yield f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\r\n".encode()
    chunk = b"\xff" * 65536
    for _ in range(total // len(chunk)):
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()
