"""App-wide behaviour: missing weights give a 503 that says what to do, health and docs."""
from __future__ import annotations

import io

import numpy as np
from aiohttp.test_utils import TestClient, TestServer
from PIL import Image

from matting.runtime import MattingRuntime, RuntimeConfig
from server.app import create_app
from server.config import ServerConfig


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 48, 3), 120, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


async def test_missing_weights_answer_503_naming_the_file(tmp_path):
    runtime = MattingRuntime(RuntimeConfig(device="cpu", download=False,
                                           rvm_weights=tmp_path / "no-rvm.pth",
                                           rmbg_weights=tmp_path / "no-rmbg.safetensors"))
    app = create_app(ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec"), runtime=runtime)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        for model, missing in (("auto", "no-rvm.pth"), ("rmbg", "no-rmbg.safetensors")):
            resp = await client.post("/remove-bg", params={"model": model}, data={"file": io.BytesIO(png_bytes())})
            body = await resp.json()
            assert resp.status == 503, body
            assert body["error"]["code"] == "model_unavailable"
            assert missing in body["error"]["message"]
        spec = await (await client.get("/openapi.json")).json()
        assert "model_unavailable" in spec["paths"]["/remove-bg"]["post"]["responses"]["503"]["description"]
        health = await client.get("/healthz")
        assert health.status == 200 and (await health.json())["device"].startswith("cpu")
        docs = await client.get("/docs")
        assert docs.status == 200 and "swagger-ui" in await docs.text()
        assert (await client.get("/docs/static/swagger-ui-bundle.js")).status == 200
