"""The camera-to-screen measurement works in headless Chromium: numbered camera frames are
read back from the preview and from the returned (matted, blurred) video and paired.

No speed is asserted here (bench/bench_browser_latency.py gives the figures); what is
checked is that fresh frames come back and that every pairing is a real one.
"""
from __future__ import annotations

import asyncio
import itertools

import pytest

from browser_support import CHROMIUM, fake_camera_args
from latency_probe import BAND, BLOCKS, FPS, READER_JS, TAKE_JS, make_coded_y4m, match
from live_support import live_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

CLIP_FRAMES = 150  # a 5 s loop


async def test_latency_probe_pairs_preview_and_returned_frames(runtime, tmp_path, media):
    from playwright.async_api import async_playwright

    y4m = make_coded_y4m(media / "video" / "pixabay_thoughtful_35590_8s_640x360.mp4", tmp_path / "camera.y4m",
                         frames=CLIP_FRAMES)
    async with live_server(runtime, tmp_path) as (_, url), async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=fake_camera_args(y4m))
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/", timeout=30_000)
            await page.check('input[name="bg"][value="blur"]')
            await page.click("#start")
            await page.wait_for_function("() => document.getElementById('remote').videoWidth > 0",
                                         timeout=90_000)
            await page.evaluate(READER_JS, [BLOCKS, BAND])
            local, remote, bad = [], [], {"local": 0, "remote": 0}
            for _ in range(120):  # until 10 returned frames are read, at most ~60 s on a loaded machine
                await asyncio.sleep(0.5)
                got = await page.evaluate(TAKE_JS)
                local += got["local"]["frames"]
                remote += got["remote"]["frames"]
                for side in bad:
                    bad[side] += got[side]["bad"]
                if len(remote) >= 10:
                    break
        finally:
            await browser.close()

    result = match(local, remote, loop_ms=CLIP_FRAMES / FPS * 1000, bad_local=bad["local"], bad_remote=bad["remote"])
    print(f"\nlatency probe: {len(local)} preview and {len(remote)} returned frames read "
          f"(unreadable {bad}); {result.to_json()}")
    assert len(remote) >= 10, "too few returned frames carried a readable number"
    # the preview shows the camera's own numbers in order, one after another
    numbers = [n for n, _ in local]
    steps = [(b - a) % CLIP_FRAMES for a, b in itertools.pairwise(numbers)]
    assert len(numbers) >= 30 and sum(s in (1, 2) for s in steps) > 0.8 * len(steps), numbers[:40]
    # the returned video shows fresh camera frames, each of which the preview showed earlier
    assert result.distinct >= 5, [n for n, _ in remote]
    assert result.latencies_ms.size >= 0.8 * result.distinct
    assert (result.latencies_ms > 0).all() and (result.latencies_ms < CLIP_FRAMES / FPS * 1000).all()
    assert bad["remote"] <= 0.2 * (len(remote) + bad["remote"]), bad
