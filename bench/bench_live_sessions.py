"""Concurrent live sessions against the real server: fps and latency per session. Prints JSON.

For each count in ``--sessions``, that many aiortc peers (tests/webrtc_client.py) send
a 640x480 clip at 30 fps to ``abrar serve`` on 127.0.0.1 and receive the matted video.
Every sent frame carries its number as blocks along the bottom (tests/latency_probe.py),
which survive VP8 and the background blur, so each returned frame is matched to the
frame it came from: latency = returned frame decoded - same frame handed to the
encoder (both encodes, the network both ways, the server's decode, wait, matting and
composite, and the client's decode). The peers run in one process beside the server,
as browsers would on the same machine.

    python bench/bench_live_sessions.py --sessions 1,2,4 --seconds 15
    python bench/bench_live_sessions.py --url http://127.0.0.1:8080 --sessions 8
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
import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the real aiortc peer, the frame code and the server process
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared"))
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))
os.environ.setdefault("ABRAR_ICE_ADDRESSES", "127.0.0.1")

from latency_probe import BITS, paint_code, read_code  # noqa: E402
from server_process import running_server  # noqa: E402
from webrtc_client import FRAME_TICKS, ClipTrack, LiveClient, load_clip  # noqa: E402

VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
LOOP = 1 << BITS  # frame numbers repeat after this many frames


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sessions", default="1,2", help="comma-separated session counts to run, one after the other")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per count")
    p.add_argument("--warmup-seconds", type=float, default=5.0, help="after every session's first frame")
    p.add_argument("--size", default="640x480")
    p.add_argument("--background", default="blur", help="session background (the code survives blur and colours "
                                                        "only where the matte keeps the band; blur is safest)")
    p.add_argument("--url", help="measure this running server instead of starting one")
    p.add_argument("--server-pid", type=int,
                   help="with --url: that server's process id, to report its event loop's CPU (Linux)")
    p.add_argument("--server-arg", action="append", default=[],
                   help="extra `abrar serve` flag for the server started here (repeatable)")
    return p.parse_args()


class CodedClipTrack(ClipTrack):
    """The clip with frame k's number painted on it."""

    async def recv(self):
        frame = await super().recv()
        k = frame.pts // FRAME_TICKS
        rgb = self.frames[k % len(self.frames)].copy()
        paint_code(rgb, k % LOOP)
        coded = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        coded.pts, coded.time_base = frame.pts, frame.time_base
        return coded


class CodedClient(LiveClient):
    """Reads the number off each returned frame as it arrives instead of keeping the frame."""

    def __post_init__(self):
        super().__post_init__()
        self.latencies: list[tuple[float, float]] = []  # (received at, ms)
        self.unreadable = 0

    async def _read_video(self, track) -> None:
        from aiortc.mediastreams import MediaStreamError

        try:
            while True:
                frame = await track.recv()
                at = time.monotonic()
                self._first_frame.set()
                code = read_code(frame.to_ndarray(format="rgb24"))
                if code is None:
                    self.unreadable += 1
                    continue
                sent = [t for k, t in self.video.sent.items() if k % LOOP == code and t <= at]
                if sent:
                    self.latencies.append((at, (at - max(sent)) * 1000.0))
        except MediaStreamError:
            pass


def thread_cpu_s(pid: int | None) -> tuple[float, float] | None:
    """CPU seconds (user + system) so far of process ``pid``'s main thread, which runs
    the event loop that carries every session's RTP, and of its other threads together
    (decoders, encoders, the live lane). None off Linux or without a pid."""
    if pid is None or not Path(f"/proc/{pid}/task").is_dir():
        return None
    tick = os.sysconf("SC_CLK_TCK")
    main = other = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        cpu = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        if int(task.name) == pid:
            main += cpu
        else:
            other += cpu
    return main, other


def server_cpu(before: tuple[float, float] | None, after: tuple[float, float] | None, seconds: float,
               frames: int) -> dict | None:
    """Cores the server's event loop and other threads used over the window, and the event
    loop's milliseconds per frame returned: the figure that bounds sessions per process
    whatever matting costs, since one loop carries them all."""
    if before is None or after is None:
        return None
    loop_s, other_s = after[0] - before[0], after[1] - before[1]
    return {"event_loop_cores": round(loop_s / seconds, 3), "other_threads_cores": round(other_s / seconds, 3),
            "event_loop_ms_per_frame": round(loop_s * 1000 / frames, 2) if frames else None}


def summary(client: CodedClient, start: float, end: float) -> dict:
    window = [(t, ms) for t, ms in client.latencies if start <= t <= end]
    lat = np.asarray([ms for _, ms in window])

    def q(p: float) -> float | None:
        return round(float(np.percentile(lat, p)), 1) if lat.size else None

    return {"fps": round(len(window) / (end - start), 2), "latency_ms": {"p50": q(50), "p95": q(95), "max": q(100)},
            "frames": len(window), "unreadable": client.unreadable}


async def run_count(url: str, count: int, frames: list[np.ndarray], args: argparse.Namespace,
                    pid: int | None) -> dict:
    clients = [CodedClient(url, CodedClipTrack(frames), background=args.background, keep_frames=False)
               for _ in range(count)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        try:
            refused = []
            for c in clients:
                try:
                    await c.connect(http)
                except RuntimeError as exc:  # admission said no: part of the answer
                    refused.append(str(exc))
            clients = [c for c in clients if c.session_id is not None]
            await asyncio.gather(*(c.wait_first_frame(120) for c in clients))
            await asyncio.sleep(args.warmup_seconds)
            load = [os.getloadavg()[0]]
            cpu_before = thread_cpu_s(pid)
            start = time.monotonic()
            await asyncio.sleep(args.seconds)
            end = time.monotonic()
            cpu_after = thread_cpu_s(pid)
            load.append(os.getloadavg()[0])
            async with http.get(f"{url}/sessions") as resp:
                server = {s["id"]: s["stats"] for s in (await resp.json())["sessions"]}
            per_session = [{**summary(c, start, end), "server": server.get(c.session_id)} for c in clients]
        finally:
            for c in clients:
                await c.close()
    fps = [s["fps"] for s in per_session] or [0.0]
    cpu = server_cpu(cpu_before, cpu_after, end - start, sum(s["frames"] for s in per_session))
    p95 = [s["latency_ms"]["p95"] for s in per_session if s["latency_ms"]["p95"] is not None]
    return {"sessions": count, "refused": refused, "fps_min": min(fps), "fps_mean": round(sum(fps) / len(fps), 2),
            "latency_p95_ms_worst": max(p95) if p95 else None, "load_avg_1min": {"start": load[0], "end": load[1]},
            "server_cpu": cpu, "per_session": per_session}


async def sweep(url: str, args: argparse.Namespace, pid: int | None) -> list[dict]:
    w, h = map(int, args.size.split("x"))
    frames = load_clip(VIDEO, (w, h))
    results = []
    for count in (int(n) for n in args.sessions.split(",")):
        results.append(await run_count(url, count, frames, args, pid))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "per_session"}), file=sys.stderr)
        await asyncio.sleep(2)  # let the server release the sessions
    return results


def main() -> None:
    args = parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    if args.url:
        results = asyncio.run(sweep(args.url.rstrip("/"), args, args.server_pid))
    else:
        with tempfile.TemporaryDirectory(prefix="abrar-sessions-") as tmp, \
                running_server(Path(tmp) / "data", args=["--live-max-sessions", str(max(counts)), *args.server_arg],
                               timeout=120) as server:
            results = asyncio.run(sweep(server.url, args, server.proc.pid))
    print(json.dumps({
        "bench": f"concurrent live sessions: aiortc peers on 127.0.0.1 send {args.size} at 30 fps to abrar serve "
                 f"(background {args.background}); latency = frame handed to the sender's encoder -> "
                 "same frame decoded back",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "seconds": args.seconds, "server_args": args.server_arg,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
