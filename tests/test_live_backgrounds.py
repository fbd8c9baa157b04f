"""Background images for live sessions are decoded in the heavy lane, off the event loop,
with ABRAR_MAX_IMAGE_PIXELS as the limit."""
from __future__ import annotations

import io
import struct
import threading
import zlib

import aiohttp
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from PIL import Image

from live_support import live_server
from server.live import backgrounds
from webrtc_client import SilentTrack


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def image_form(data: bytes) -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("image", data, filename="bg.png", content_type="image/png")
    return form


async def test_background_upload_is_decoded_off_the_loop_with_the_pixel_limit(runtime, tmp_path, monkeypatch):
    decoded_on: list[str] = []
    real_load = backgrounds.load_image

    def spying_load(data, **kw):
        decoded_on.append(threading.current_thread().name)
        return real_load(data, **kw)

    monkeypatch.setattr(backgrounds, "load_image", spying_load)
    bomb = png_header_only(7000, 7000)  # 49 MP: over the default 40 MP limit
    good = io.BytesIO()
    Image.fromarray(np.full((90, 160, 3), (10, 200, 30), np.uint8)).save(good, format="PNG")
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTrack(SilentTrack())
        await pc.setLocalDescription(await pc.createOffer())
        async with http.post(f"{url}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as resp:
            sid = (await resp.json())["session_id"]
        async with http.post(f"{url}/sessions/{sid}/background", data=image_form(bomb)) as resp:
            body = await resp.json()
            assert resp.status == 413, body
            assert "7000x7000" in body["error"]["message"] and "ABRAR_MAX_IMAGE_PIXELS" in body["error"]["message"]
        async with http.post(f"{url}/sessions/{sid}/background", data=image_form(good.getvalue())) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["background"] == "image"
        await pc.close()
    assert len(decoded_on) == 1, "the over-limit image must be refused from its header, before decoding"
    assert decoded_on[0].startswith("heavy"), f"decoded on {decoded_on[0]}, not in the heavy lane"
