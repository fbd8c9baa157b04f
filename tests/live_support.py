"""Helpers for the live-session tests: an in-process server and ground-truth frame matching."""
from __future__ import annotations

import asyncio
import dataclasses
from contextlib import asynccontextmanager
from pathlib import Path

import cv2
import numpy as np
from aiohttp.test_utils import TestServer

from conftest import load_alpha
from webrtc_client import LiveClient, load_clip

CLIP = "temporal/p3m_00a7a27c_porch_512x288"


@asynccontextmanager
async def live_server(runtime, tmp_path: Path, api_key: str | None = None, **live):
    """The real app on 127.0.0.1 (random port); ``live`` overrides LiveConfig fields."""
    from server.app import create_app
    from server.config import ServerConfig
    from server.live.config import LiveConfig

    runtime.video_model()  # load before any session: the first frame must not pay for it
    config = ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "recordings", api_key=api_key,
                          live=dataclasses.replace(LiveConfig(), **live))
    server = TestServer(create_app(config, runtime=runtime), host="127.0.0.1")
    await server.start_server()
    try:
        yield server, str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


@dataclasses.dataclass(frozen=True)
class Clip:
    frames: list[np.ndarray]   # RGB uint8
    alphas: list[np.ndarray]   # ground truth, float32 [0, 1]


def load_gt_clip(media: Path) -> Clip:
    folder = media / CLIP
    frames = load_clip(folder / "com.mkv")
    alphas = [load_alpha(folder / "pha" / f"{i:04d}.png") for i in range(len(frames))]
    return Clip(frames, alphas)


def expected(clip: Clip, i: int, color: tuple[int, int, int]) -> np.ndarray:
    """What a perfect matte over a flat colour gives for clip frame ``i`` (float32 RGB)."""
    a = clip.alphas[i][:, :, None]
    return clip.frames[i].astype(np.float32) * a + np.asarray(color, np.float32) * (1 - a)


def _small(img: np.ndarray) -> np.ndarray:
    return cv2.resize(np.asarray(img, np.float32), (128, 72), interpolation=cv2.INTER_AREA)


def first_index(client: LiveClient, clip: Clip, color: tuple[int, int, int], frames: int = 40) -> tuple[int, float]:
    """The clip index of the first returned frame, and the share of frames agreeing with it.

    Each returned frame is matched to the nearest ideal composite; returned frame j
    has pts (k_j - k_0) * 3000, so one offset k_0 must explain them all. The share
    of frames it explains (within one frame of motion) is the check that it does.
    """
    n = len(clip.frames)
    ideals = np.stack([_small(expected(clip, i, color)) for i in range(n)])
    rows = client.received[:frames]
    nearest = [int(np.argmin(np.abs(ideals - _small(r.rgb)).mean(axis=(1, 2, 3)))) for r in rows]
    steps = [round(r.pts / 3000) for r in rows]
    scores = []
    for k0 in range(n):
        agree = sum(min((k0 + s - c) % n, (c - k0 - s) % n) <= 1 for s, c in zip(steps, nearest, strict=True))
        scores.append(agree)
    best = int(np.argmax(scores))
    return best, scores[best] / max(1, len(rows))


def regions(alpha: np.ndarray, margin: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Sure background and sure person, ``margin`` px away from any edge (codec and matte slack)."""
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    background = cv2.erode((alpha <= 0.01).astype(np.uint8), kernel) > 0
    person = cv2.erode((alpha >= 0.99).astype(np.uint8), kernel) > 0
    return background, person


def colour_share(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], tol: float = 40) -> float:
    """Share of ``mask`` pixels within ``tol`` (per channel) of ``color``."""
    diff = np.abs(rgb[mask].astype(np.int16) - np.asarray(color, np.int16)).max(axis=1)
    return float((diff <= tol).mean())


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q))


async def wait_for(predicate, timeout: float, interval: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


async def wait_more_frames(http, url: str, session_id: str, more: int, timeout: float = 60.0) -> int:
    """Wait until the server has matted ``more`` frames beyond now; returns the count then."""
    async def frames() -> int:
        async with http.get(f"{url}/sessions/{session_id}") as resp:
            return (await resp.json())["stats"]["frames"]

    target = await frames() + more
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (count := await frames()) < target:
        if loop.time() > deadline:
            raise TimeoutError(f"only {count} of {target} frames matted in {timeout:.0f} s")
        await asyncio.sleep(0.2)
    return count


async def live_api_fuzzer(http, base: str):
    """``fuzz(method, path, mode, **fixed)``: 15 schemathesis cases of one operation of the
    server at ``base``, none answered with a 5xx; in positive mode each response matches
    the spec. A schema-valid body may still be refused with a documented 4xx (SDP offers
    and background specs have rules a schema cannot state). Blocking: run it in a thread."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis import GenerationMode, checks

    async with http.get(f"{base}/openapi.json") as resp:
        schema = schemathesis.openapi.from_dict(await resp.json())
    schema.config.update(base_url=base)

    def fuzz(method, path, mode, **fixed):
        @given(case=schema[path][method].as_strategy(generation_mode=mode, **fixed))
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.as_curl_command(), response.status_code, response.text)
            if mode == GenerationMode.POSITIVE:
                case.validate_response(response, excluded_checks=[checks.positive_data_acceptance])

        run()

    return fuzz
