"""A WHEP player not written here, @eyevinn/webrtc-player (npm, bundled with esbuild),
plays /whep/{session} in headless Chromium from a page on another origin: frames are
decoded and the picture is the matted one (green where the clip's background was)."""
from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from browser_support import CHROMIUM, colour_share_script
from live_support import load_gt_clip, wait_more_frames
from server_process import free_port
from streams_support import start_app
from webrtc_http_support import WhipPublisher

WEB = Path(__file__).resolve().parent / "web"
GREEN = (0, 255, 0)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

PAGE = """<!doctype html><html><body>
<video id="v" autoplay muted playsinline width="512" height="288"></video>
<script src="player.js"></script>
<script>
window.play = async (url) => {
  window.player = new WebRTCPlayer({ video: document.getElementById("v"), type: "whep",
                                     mediaConstraints: { videoOnly: true } });
  await window.player.load(new URL(url));
};
</script></body></html>"""

DECODED = "() => document.getElementById('v').getVideoPlaybackQuality().totalVideoFrames"

GREEN_SHARE = colour_share_script("v")


def green_share(rgb: np.ndarray) -> float:
    return float((np.abs(rgb.astype(np.int16) - np.asarray(GREEN, np.int16)).max(axis=2) < 40).mean())


def bundle(out: Path) -> Path:
    esbuild = WEB / "node_modules" / ".bin" / "esbuild"
    if not esbuild.exists():
        pytest.fail("the WHEP player is not installed: npm ci --prefix tests/web (scripts/setup.sh --test)")
    subprocess.run([str(esbuild), str(WEB / "whep_player.js"), "--bundle", "--format=iife", "--log-level=warning",
                    f"--outfile={out}"], check=True, timeout=60)
    return out


async def test_webrtc_player_plays_a_matted_session_over_whep(runtime, media, tmp_path, artifacts):
    from playwright.async_api import async_playwright

    from server.config import ServerConfig

    clip = load_gt_clip(media)
    assert max(green_share(f) for f in clip.frames) < 0.05  # so green in the player can only be the matte
    player_js = bundle(tmp_path / "player.js")

    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(_: web.Request) -> web.FileResponse:
        return web.FileResponse(player_js)

    pages = web.Application()
    pages.router.add_get("/", index)
    pages.router.add_get("/player.js", script)
    page_server = TestServer(pages, host="127.0.0.1", port=free_port())
    await page_server.start_server()

    runtime.video_model()
    # The page is on another origin: the player's POST with application/sdp needs CORS.
    config = dataclasses.replace(ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec"),
                                 cors_origins=f"http://127.0.0.1:{page_server.port}")
    server, http, base = await start_app(config, runtime)
    publisher = WhipPublisher(base, clip.frames)
    try:
        session_id = await publisher.publish(http, "/whip?background=%2300ff00")
        await wait_more_frames(http, base, session_id, 3, timeout=90)
        async with async_playwright() as p:
            browser = await p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync",
                      # real host candidates instead of .local names (no camera permission here)
                      "--disable-features=WebRtcHideLocalIpsWithMdns"])
            try:
                page = await browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                await page.goto(f"http://127.0.0.1:{page_server.port}/", timeout=30_000)
                await page.evaluate("(url) => window.play(url)", f"{base}/whep/{session_id}")
                await page.wait_for_function("() => document.getElementById('v').videoWidth > 0", timeout=90_000)
                first = await page.evaluate(DECODED)
                await asyncio.sleep(4)
                later = await page.evaluate(DECODED)
                share = await page.evaluate(GREEN_SHARE, list(GREEN))
                async with http.get(f"{base}/sessions/{session_id}") as resp:
                    viewers = (await resp.json())["viewers"]
                await page.screenshot(path=str(artifacts / "whep_player_chromium.png"))
                print(f"\nwebrtc-player: frames decoded {first} -> {later} in 4 s; green share {share:.2f}")
                assert later > first > 0, "the player does not decode frames"
                assert share > 0.3, "the player does not show the matted picture"
                assert viewers == 1
                await page.evaluate("() => window.player.unload()")  # DELETEs its WHEP resource
                for _ in range(100):
                    async with http.get(f"{base}/sessions/{session_id}") as resp:
                        if (await resp.json())["viewers"] == 0:
                            break
                    await asyncio.sleep(0.1)
                else:
                    pytest.fail("the player's unload did not end its WHEP viewer")
                assert errors == [], errors
            finally:
                await browser.close()
    finally:
        await publisher.close()
        await http.close()
        await server.close()
        await page_server.close()
