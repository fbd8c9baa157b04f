"""Helpers for the upload-API tests: an in-process server on 127.0.0.1, forms, clips, polling."""
from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestClient, TestServer

from server.app import create_app
from server.config import ServerConfig
from server.jobs.config import JobsConfig

CLIP_SOURCE = "video/pixabay_thoughtful_35590_8s_640x360.mp4"


@asynccontextmanager
async def api_client(runtime, data_dir: Path, server: dict | None = None,
                     **jobs: object) -> AsyncIterator[TestClient]:
    """The real app (all features) on 127.0.0.1 with the session's runtime; ``server`` overrides
    ServerConfig fields, ``jobs`` JobsConfig ones."""
    config = ServerConfig(data_dir=data_dir, jobs=dataclasses.replace(JobsConfig(), **jobs), **(server or {}))
    app = create_app(config, runtime=runtime)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        yield client


def form(data: bytes, filename: str = "upload.bin", field: str = "file",
         content_type: str = "application/octet-stream") -> aiohttp.FormData:
    f = aiohttp.FormData()
    f.add_field(field, data, filename=filename, content_type=content_type)
    return f


def make_clip(media: Path, out: Path, *, seconds: float, width: int = 640, height: int = 360,
              fps: float = 30, start: float = 0.0, tone: bool = True) -> Path:
    """A slice of the real test video, scaled and resampled, with a 440 Hz sine as its AAC audio."""
    if out.exists():
        return out
    cmd = ["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-t", str(seconds), "-i", str(media / CLIP_SOURCE)]
    if tone:
        cmd += ["-f", "lavfi", "-t", str(seconds), "-i", "sine=frequency=440:sample_rate=48000",
                "-c:a", "aac", "-b:a", "64k", "-shortest"]
    cmd += ["-vf", f"scale={width}:{height},fps={fps}", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
            "-pix_fmt", "yuv420p", "-map_metadata", "-1", str(out)]
    subprocess.run(cmd, check=True, timeout=60)
    return out


async def wait_for(check: Callable[[], Awaitable[object]], timeout: float, interval: float = 0.1,
                   what: str = "condition") -> object:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds,
    with the last state ``check`` saw when it keeps one (a ``last`` attribute)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            last = getattr(check, "last", None)
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}"
                                 + (f"; last seen: {last}" if last is not None else ""))
        await asyncio.sleep(interval)
