"""A real RTSP camera for tests: GStreamer's gst-rtsp-server serving an H.264(+AAC) mp4.

Run with Debian's interpreter (python3-gi is not in the venv):

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file clip.mp4

Serves rtsp://127.0.0.1:PORT/test without re-encoding and prints ``READY <url>`` on
stdout once it listens. The media is shared, so every client sees the same playback,
as with a real camera. SIGTERM/SIGINT stop it; tests use SIGKILL to simulate a crash.
"""
from __future__ import annotations

import argparse
import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402  (after gi.require_version)


def launch_line(path: str, audio: bool) -> str:
    # config-interval=1 repeats SPS/PPS so a client that joins late decodes at the next IDR.
    video = (f"filesrc location=\"{path}\" ! qtdemux name=d "
             "d.video_0 ! queue ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1")
    sound = " d.audio_0 ! queue ! aacparse ! rtpmp4gpay name=pay1 pt=97" if audio else ""
    return f"( {video}{sound} )"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--file", required=True, help="mp4 with H.264 video (and optionally AAC audio)")
    parser.add_argument("--no-audio", action="store_true", help="the file has no audio track")
    parser.add_argument("--mount", default="/test")
    args = parser.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args.file, audio=not args.no_audio))
    factory.set_shared(True)
    server.get_mount_points().add_factory(args.mount, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on 127.0.0.1:{args.port}", file=sys.stderr)
        return 1

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, lambda *_: (loop.quit(), False)[1])
    print(f"READY rtsp://127.0.0.1:{args.port}{args.mount}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
