"""Camera-to-screen latency and received fps of the live page in headless Chromium. Prints JSON.

Chromium's fake camera plays a clip whose frames carry their number (see
tests/latency_probe.py); the page reads it back from the local preview and from the
returned video, so the latency is what a user sees: capture, VP8 encode in the
browser, the network, the server (decode, wait, matting, composite, encode), the
browser's jitter buffer, decode and display. Chromium runs on the same cores as the
server, as on a laptop that serves itself.

    python bench/bench_browser_latency.py --seconds 20
    python bench/bench_browser_latency.py --background color --size 1280x720
    python bench/bench_browser_latency.py --url http://127.0.0.1:8080   # a server already running
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test helpers: the server process and the frame code
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))
os.environ.setdefault("ABRAR_ICE_ADDRESSES", "127.0.0.1")

from browser_support import CHROMIUM, fake_camera_args  # noqa: E402
from latency_probe import (  # noqa: E402
    BAND,
    BLOCKS,
    FPS,
    READER_JS,
    STATS_JS,
    TAKE_JS,
    make_coded_y4m,
    match,
    stats_breakdown,
)
from server_process import running_server  # noqa: E402

VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
CLIP_FRAMES = 300  # 10 s loop: any latency below that is unambiguous


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    p.add_argument("--warmup-seconds", type=float, default=8.0, help="after the first returned frame")
    p.add_argument("--size", default="640x480", choices=("640x480", "1280x720", "320x240"))
    p.add_argument("--background", default="blur", choices=("blur", "color", "transparent"),
                   help="the page's background choice (blur at its default strength)")
    p.add_argument("--url", help="measure this running server instead of starting one")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `abrar serve` flag for the server started here (repeatable)")
    return p.parse_args()


async def measure(url: str, y4m: Path, args: argparse.Namespace) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=fake_camera_args(y4m))
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/", timeout=30_000)
            await page.select_option("#resolution", args.size)
            await page.check(f'input[name="bg"][value="{args.background}"]')
            await page.click("#start")
            await page.wait_for_function("() => document.getElementById('remote').videoWidth > 0",
                                         timeout=120_000)
            await page.evaluate(READER_JS, [BLOCKS, BAND])
            await asyncio.sleep(args.warmup_seconds)
            await page.evaluate(TAKE_JS)
            load_before = os.getloadavg()
            counters = await page.evaluate(STATS_JS)
            await asyncio.sleep(args.seconds)
            got = await page.evaluate(TAKE_JS)
            browser_side = stats_breakdown(counters, await page.evaluate(STATS_JS))
            page_estimate = await page.text_content("#stat-rtt")  # the page's own "round trip" figure
            load_after = os.getloadavg()
            async with aiohttp.ClientSession() as http, http.get(f"{url}/sessions") as resp:
                sessions = (await resp.json())["sessions"]
            version = browser.version
        finally:
            await browser.close()
    result = match(got["local"]["frames"], got["remote"]["frames"], loop_ms=CLIP_FRAMES / FPS * 1000,
                   bad_local=got["local"]["bad"], bad_remote=got["remote"]["bad"])
    return {**result.to_json(), "page_estimate": page_estimate, "browser": browser_side,
            "server": sessions[0]["stats"] if sessions else None,
            "chromium": version, "load_avg_1min": {"before": load_before[0], "after": load_after[0]}}


def main() -> None:
    args = parse_args()
    w, h = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory(prefix="abrar-latency-") as tmp:
        y4m = make_coded_y4m(VIDEO, Path(tmp) / "camera.y4m", size=(w, h), frames=CLIP_FRAMES)
        if args.url:
            result = asyncio.run(measure(args.url.rstrip("/"), y4m, args))
        else:
            with running_server(Path(tmp) / "data", args=args.server_arg, timeout=120) as server:
                result = asyncio.run(measure(server.url, y4m, args))
    print(json.dumps({
        "bench": f"live page in headless Chromium, {args.size} fake camera at {FPS} fps, background "
                 f"{args.background}: camera frame shown in the preview -> same frame shown returned",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "seconds": args.seconds, "server_args": args.server_arg,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **result,
    }, indent=2))


if __name__ == "__main__":
    main()
