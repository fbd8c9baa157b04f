"""Recording a live session: VP9 with the matte's alpha plus Opus, finalised however the session ends."""
from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import aiohttp
import av
import numpy as np
import pytest

from live_support import CLIP, live_server, load_gt_clip, wait_more_frames
from matting.metrics import mad
from matting.video_io import has_audio, read_alpha_frames
from server_process import start_server
from webrtc_client import ClipTrack, LiveClient, ToneTrack

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parent.parent


def check_recording(path: Path, alphas: list[np.ndarray], label: str) -> dict:
    """Decode with libvpx (alpha kept) and check the alpha is a real matte, plus audio."""
    frames = list(read_alpha_frames(path))
    assert frames, f"{label}: no video frames decoded"
    assert frames[0].shape[2] == 4
    # The recording holds the matte, not the composite: its alpha must match the
    # clip's ground truth at some frame (frames were dropped, so match the nearest).
    nearest = [min(mad(f[:, :, 3].astype(np.float32) / 255.0, gt) for gt in alphas) for f in frames]
    clear = float(np.mean([(f[:, :, 3] < 13).mean() for f in frames]))
    opaque = float(np.mean([(f[:, :, 3] > 242).mean() for f in frames]))
    with av.open(str(path)) as src:
        video_s = float(src.streams.video[0].duration * src.streams.video[0].time_base) \
            if src.streams.video[0].duration else float(src.duration or 0) / av.time_base
    result = {"frames": len(frames), "alpha_mad_median": float(np.median(nearest)), "clear": clear,
              "opaque": opaque, "bytes": path.stat().st_size, "video_s": video_s}
    print(f"\n{label}: {result}")
    assert clear > 0.2 and opaque > 0.1, "alpha plane is not a matte (no transparent or no opaque region)"
    assert result["alpha_mad_median"] < 60, "recorded alpha does not match the ground truth"
    assert has_audio(path), f"{label}: no audio stream"
    return result


def tone_frequency(path: Path) -> tuple[float, float]:
    """(seconds of audio, dominant frequency in Hz) of the recording's audio stream."""
    with av.open(str(path)) as src:
        pcm = np.concatenate([f.to_ndarray().reshape(-1, f.samples)[0].astype(np.float64)
                              for f in src.decode(audio=0)])
        rate = src.streams.audio[0].rate
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return len(pcm) / rate, float(np.fft.rfftfreq(len(pcm), 1 / rate)[int(np.argmax(spectrum))])


async def test_recording_has_alpha_and_audio(runtime, media, tmp_path):
    clip = load_gt_clip(media)
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:
        client = LiveClient(url, ClipTrack(clip.frames), ToneTrack(440.0), background="green", keep_frames=False)
        sid = await client.connect(http)
        await client.wait_first_frame(timeout=60)
        async with http.post(f"{url}/sessions/{sid}/recording", json={"action": "start"}) as resp:
            started = await resp.json()
        assert started["recording"] and started["name"].endswith(".webm")
        await asyncio.sleep(4)
        await wait_more_frames(http, url, sid, 4)
        async with http.post(f"{url}/sessions/{sid}/recording", json={"action": "stop"}) as resp:
            stopped = await resp.json()
        assert stopped["name"] == started["name"] and stopped["bytes"] > 0
        async with http.get(f"{url}/recordings") as resp:
            assert started["name"] in [r["name"] for r in (await resp.json())["recordings"]]
        async with http.get(f"{url}{stopped['url']}") as resp:
            assert resp.status == 200 and resp.content_type == "video/webm"
            data = await resp.read()
        await client.close()
    path = tmp_path / "downloaded.webm"
    path.write_bytes(data)
    assert data == (tmp_path / "recordings" / started["name"]).read_bytes()
    result = check_recording(path, clip.alphas, "recording (stopped over HTTP)")
    seconds, freq = tone_frequency(path)
    print(f"audio: {seconds:.1f} s, dominant frequency {freq:.1f} Hz (sent 440 Hz)")
    assert abs(freq - 440.0) < 5, "the client's tone is not in the recording"
    assert seconds > 3 and abs(seconds - result["video_s"]) < 1.5, "audio and video lengths disagree"


async def _subprocess_client(url: str, media: Path) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO / "tests" / "webrtc_client.py"), url, str(media / CLIP / "com.mkv"),
        "--background", "green", "--record", stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 90)
        return proc, json.loads(line)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise


async def _wait_closed(http: aiohttp.ClientSession, url: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        async with http.get(f"{url}/sessions") as resp:
            if not (await resp.json())["sessions"]:
                return time.monotonic() - t0
        await asyncio.sleep(0.2)
    raise TimeoutError("session still open")


async def test_abrupt_client_drop_is_released_within_10_s_and_finalises_the_recording(runtime, media, tmp_path):
    clip = load_gt_clip(media)
    async with live_server(runtime, tmp_path) as (_, url), aiohttp.ClientSession() as http:  # default timeouts
        proc, info = await _subprocess_client(url, media)
        await wait_more_frames(http, url, info["session_id"], 4)
        async with http.get(f"{url}/sessions") as resp:
            assert (await resp.json())["capacity"]["admitted"] == 1
        proc.kill()  # SIGKILL: no BYE, no DTLS close, sockets just vanish
        await proc.wait()
        closed_after = await _wait_closed(http, url, timeout=30)
        async with http.get(f"{url}/sessions") as resp:
            capacity = (await resp.json())["capacity"]
        async with http.get(f"{url}/recordings") as resp:
            names = [r["name"] for r in (await resp.json())["recordings"]]
    print(f"\nclient killed; session closed {closed_after:.1f} s later (default idle timeout)")
    assert closed_after < 10.0, "a vanished client held its session for 10 s or more"
    assert capacity["admitted"] == 0, "the closed session still holds a share of capacity"
    assert info["recording"] in names
    check_recording(tmp_path / "recordings" / info["recording"], clip.alphas, "recording (client killed)")


async def test_server_sigterm_finalises_the_recording(media, tmp_path):
    clip = load_gt_clip(media)
    recordings = tmp_path / "recordings"
    server = await asyncio.to_thread(start_server, tmp_path / "data", args=["--recordings-dir", str(recordings)])
    try:
        async with aiohttp.ClientSession() as http:
            client = LiveClient(server.url, ClipTrack(clip.frames), ToneTrack(), background="green",
                                keep_frames=False)
            sid = await client.connect(http)
            await client.wait_first_frame(timeout=90)
            async with http.post(f"{server.url}/sessions/{sid}/recording", json={"action": "start"}) as resp:
                name = (await resp.json())["name"]
            await wait_more_frames(http, server.url, sid, 4)
            code = await asyncio.to_thread(server.terminate, 30.0)
            await client.close()
    finally:
        server.kill()
    print(f"\nserver exited with {code} after SIGTERM")
    assert code == 0, server.log()
    assert not list(recordings.glob("*.part")), "a recording was left half-written"
    check_recording(recordings / name, clip.alphas, "recording (server SIGTERM)")
