"""Readiness: /readyz is 503 until the models load, names a missing weight file, and
turns 503 when the video-job worker dies; /healthz stays a cheap liveness check."""
from __future__ import annotations

import asyncio
import dataclasses
import time

from aiohttp.test_utils import TestClient, TestServer

from matting.runtime import MattingRuntime, RuntimeConfig
from server.app import create_app
from server.config import ModelConfig, ServerConfig
from server.jobs.state import JOBS


def missing_weights_app(tmp_path, preload: bool = True):
    runtime = MattingRuntime(RuntimeConfig(device="cpu", download=False, rvm_weights=tmp_path / "no-rvm.pth",
                                           rmbg_weights=tmp_path / "no-rmbg.safetensors"))
    config = ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec",
                          model=dataclasses.replace(ModelConfig(), preload=preload))
    return create_app(config, runtime=runtime)


async def settled_readiness(client: TestClient, timeout: float = 30.0) -> tuple[int, dict]:
    """/readyz once no model is waiting or loading any more."""
    deadline = time.monotonic() + timeout
    while True:
        resp = await client.get("/readyz")
        body = await resp.json()
        states = {m["state"] for m in body["models"].values()}
        if not states & {"waiting", "loading"}:
            return resp.status, body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.1)


async def test_readiness_names_the_missing_weight_files(tmp_path):
    async with TestClient(TestServer(missing_weights_app(tmp_path), host="127.0.0.1")) as client:
        status, body = await settled_readiness(client)
        assert status == 503 and body["status"] == "not_ready"
        models = body["models"]
        assert models["rvm"]["state"] == "missing" and "no-rvm.pth" in models["rvm"]["detail"]
        assert models["rmbg"]["state"] == "missing" and "no-rmbg.safetensors" in models["rmbg"]["detail"]
        assert any("no-rmbg.safetensors" in p for p in body["problems"])
        health = await client.get("/healthz")
        assert health.status == 200  # alive, just not ready


async def test_lazy_mode_is_ready_without_loading(tmp_path):
    async with TestClient(TestServer(missing_weights_app(tmp_path, preload=False), host="127.0.0.1")) as client:
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 200, body
        assert {m["state"] for m in body["models"].values()} == {"lazy"}


async def test_readiness_fails_when_the_job_worker_dies(runtime, tmp_path):
    config = ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec",
                          model=dataclasses.replace(ModelConfig(), preload=False))
    app = create_app(config, runtime=runtime)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        assert (await client.get("/readyz")).status == 200
        worker = app[JOBS].runner._tasks[0]
        worker.cancel()  # what a bug escaping the worker loop would leave behind
        await asyncio.gather(worker, return_exceptions=True)
        resp = await client.get("/readyz")
        body = await resp.json()
        assert resp.status == 503 and resp.headers["Retry-After"]
        assert any("video-job worker" in p and "died" in p for p in body["problems"]), body
