"""The live page in headless Chromium (Debian's) with a fake camera playing a real clip."""
from __future__ import annotations

import asyncio
import shutil
import subprocess

import aiohttp
import pytest

from browser_support import CHROMIUM, colour_share_script
from live_support import CLIP, live_server

BG_COLOUR = (0, 177, 64)  # the page's default colour (#00b140)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

FRAMES_DECODED = """async () => {
  if (!live.pc) return -1;
  let n = 0;
  (await live.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") n = s.framesDecoded || 0;
  });
  return n;
}"""

# Share of the returned video's pixels near the chosen background colour.
COLOUR_SHARE = colour_share_script("remote")


def make_y4m(media, path) -> None:
    """Chromium's fake camera plays (and loops) a y4m file."""
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(media / CLIP / "com.mkv"),
                    "-pix_fmt", "yuv420p", "-f", "yuv4mpegpipe", str(path)], check=True, timeout=60)


@pytest.fixture
async def browser(tmp_path, media):
    from playwright.async_api import async_playwright

    if not shutil.which(CHROMIUM):
        pytest.fail("Chromium not found: apt-get install chromium")
    y4m = tmp_path / "camera.y4m"
    make_y4m(media, y4m)
    async with async_playwright() as p:
        browser = await p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                  f"--use-file-for-fake-video-capture={y4m}"])
        try:
            yield browser
        finally:
            await browser.close()


async def test_live_page_in_chromium(browser, runtime, tmp_path, artifacts):
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:
        page = await browser.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        await page.goto(f"{url}/", timeout=30_000)
        await page.check('input[name="bg"][value="color"]')
        await page.click("#start")

        await page.wait_for_function("() => document.getElementById('remote').videoWidth > 0", timeout=90_000)
        first = await page.evaluate(FRAMES_DECODED)
        await asyncio.sleep(4)
        later = await page.evaluate(FRAMES_DECODED)
        share = await page.evaluate(COLOUR_SHARE, list(BG_COLOUR))
        await page.wait_for_function("() => document.getElementById('stat-fps').textContent !== '–'",
                                     timeout=10_000)
        stats = {k: await page.text_content(f"#stat-{k}") for k in ("fps", "rtt", "server", "res", "dropped")}
        async with http.get(f"{url}/sessions") as resp:
            sessions = (await resp.json())["sessions"]
        print(f"\nChromium: framesDecoded {first} -> {later} in 4 s; background colour share {share:.2f}; "
              f"page stats {stats}")
        await page.screenshot(path=str(artifacts / "live_page_chromium.png"), full_page=True)

        assert later > first > 0, "the returned video does not deliver frames"
        assert share > 0.2, "the returned video does not show the chosen background"
        assert len(sessions) == 1 and sessions[0]["stats"]["frames"] > 0
        assert sessions[0]["audio"], "the fake microphone's audio did not reach the server"

        # Record from the page: the link to the file appears when stopped.
        await page.click("#record")
        await page.wait_for_function("() => document.getElementById('record').classList.contains('recording')",
                                     timeout=10_000)
        await asyncio.sleep(2)
        await page.click("#record")
        link = page.locator("#recording-link a")
        await link.wait_for(timeout=30_000)
        href = await link.get_attribute("href")
        async with http.get(f"{url}{href}") as resp:
            assert resp.status == 200 and len(await resp.read()) > 1000

        # Snapshot from the page: an image appears in the gallery.
        await page.click("#snapshot")
        await page.locator("#snapshots img").wait_for(timeout=90_000)
        await page.screenshot(path=str(artifacts / "live_page_chromium_snapshot.png"), full_page=True)

        await page.click("#stop")
        for _ in range(100):
            async with http.get(f"{url}/sessions") as resp:
                if (await resp.json())["sessions"] == []:
                    break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("Stop did not close the server session")
        assert errors == [], errors
