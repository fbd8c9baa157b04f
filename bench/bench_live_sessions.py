"""Concurrent live sessions against the real server: fps and latency per session. Prints JSON.

For each count in ``--sessions``, that many aiortc peers (tests/webrtc_client.py) send
a 640x480 clip at 30 fps to ``abrar serve`` on 127.0.0.1 and receive the matted video.
Every sent frame carries its number as blocks along the bottom (tests/latency_probe.py),
which survive VP8 and the background blur, so each returned frame is matched to the
frame it came from: latency = returned frame decoded - same frame handed to the
encoder (both encodes, the network both ways, the server's decode, wait, matting and
composite, and the client's decode). The peers run in one process beside the server,
as browsers would on the same machine.

With ``--pre-encoded`` the peers send a VP8 stream encoded once before the run (the same
numbered frames, one keyframe every 5 s) instead of encoding 30 frames a second each, so
the clients cost the machine what remote ones would come closest to: RTP both ways and
decoding what comes back. Latency then starts when the encoded frame is handed to the
sender.

    python bench/bench_live_sessions.py --sessions 1,2,4 --seconds 15
    python bench/bench_live_sessions.py --sessions 1,2 --pre-encoded
    python bench/bench_live_sessions.py --url http://127.0.0.1:8080 --sessions 8
"""
from __future__ import annotations

import argparse
import asyncio
import fractions
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
    p.add_argument("--pre-encoded", action="store_true",
                   help="peers send VP8 encoded before the run instead of encoding as they go")
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


# VP8 as the peers' encoder makes it, for --pre-encoded.
PRE_ENCODED_BITRATE = 1_000_000
PRE_ENCODED_KEYFRAME_EVERY = 150


def pre_encode(frames: list[np.ndarray]) -> list[av.Packet]:
    """One VP8 packet per numbered frame 0 .. LOOP-1 (frame k shows frames[k % n] with k
    painted on it), in order: looping from the last to the first starts at a keyframe."""
    h, w = frames[0].shape[:2]
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
    encoder.time_base, encoder.framerate = fractions.Fraction(1, 30), fractions.Fraction(30, 1)
    encoder.bit_rate, encoder.gop_size = PRE_ENCODED_BITRATE, PRE_ENCODED_KEYFRAME_EVERY
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets: list[av.Packet] = []
    for k in range(LOOP):
        rgb = frames[k % len(frames)].copy()
        paint_code(rgb, k)
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
        frame.pts = k
        packets.extend(encoder.encode(frame))
    packets.extend(encoder.encode(None))
    if len(packets) != LOOP or not packets[0].is_keyframe:
        raise RuntimeError(f"VP8 gave {len(packets)} packets for {LOOP} frames")
    return packets


class PreEncodedTrack(ClipTrack):
    """Sends :func:`pre_encode`'s packets at 30 fps, packet k % LOOP as frame k."""

    def __init__(self, packets: list[av.Packet]):
        super().__init__([])
        self.packets = packets

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        k = pts // FRAME_TICKS
        packet = av.Packet(bytes(self.packets[k % LOOP]))
        packet.pts, packet.time_base = pts, time_base
        self.sent[k] = time.monotonic()
        return packet


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


async def run_count(url: str, count: int, frames: list[np.ndarray], packets: list[av.Packet] | None,
                    args: argparse.Namespace, pid: int | None) -> dict:
    clients = [CodedClient(url, PreEncodedTrack(packets) if packets else CodedClipTrack(frames),
                           background=args.background, keep_frames=False)
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


async def wait_warm(url: str, timeout: float = 180.0) -> None:
    """Until the server has loaded its models and timed its live lane, as a deployed server
    would have before its first users (a session during warm-up skews its timing)."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        while time.monotonic() < deadline:
            async with http.get(f"{url}/readyz") as ready, http.get(f"{url}/sessions") as sessions:
                if ready.status == 200 and (await sessions.json())["capacity"]["frame_cost_ms"] is not None:
                    return
            await asyncio.sleep(0.5)
    raise TimeoutError(f"{url} did not warm up within {timeout:.0f} s")


async def sweep(url: str, args: argparse.Namespace, pid: int | None, frames: list[np.ndarray],
                packets: list[av.Packet] | None) -> list[dict]:
    if not args.url:
        await wait_warm(url)
    results = []
    for count in (int(n) for n in args.sessions.split(",")):
        results.append(await run_count(url, count, frames, packets, args, pid))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "per_session"}), file=sys.stderr)
        await asyncio.sleep(2)  # let the server release the sessions
    return results


def main() -> None:
    args = parse_args()
    counts = [int(n) for n in args.sessions.split(",")]
    w, h = map(int, args.size.split("x"))
    frames = load_clip(VIDEO, (w, h))
    # before the server starts: its warm-up times live frames, which this would slow down
    packets = pre_encode(frames) if args.pre_encoded else None
    if args.url:
        results = asyncio.run(sweep(args.url.rstrip("/"), args, args.server_pid, frames, packets))
    else:
        with tempfile.TemporaryDirectory(prefix="abrar-sessions-") as tmp, \
                running_server(Path(tmp) / "data", args=["--live-max-sessions", str(max(counts)), *args.server_arg],
                               timeout=120) as server:
            results = asyncio.run(sweep(server.url, args, server.proc.pid, frames, packets))
    print(json.dumps({
        "bench": f"concurrent live sessions: aiortc peers on 127.0.0.1 send {args.size} at 30 fps to abrar serve "
                 f"(background {args.background}"
                 f"{', VP8 encoded before the run' if args.pre_encoded else ''}); latency = frame handed to the "
                 f"sender{'' if args.pre_encoded else chr(39) + 's encoder'} -> same frame decoded back",
        "pre_encoded": args.pre_encoded,
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
        "seconds": args.seconds, "server_args": args.server_arg,
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
