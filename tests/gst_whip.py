"""Debian's simple-whip-client (GStreamer webrtcbin) as a child process, for the WHIP test."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

STUB = Path(__file__).resolve().parent / "native" / "gupnp_igd_stub.c"


def require_whip_client() -> str:
    path = shutil.which("whip-client")
    if path is None or shutil.which("gcc") is None:
        raise RuntimeError("the WHIP test needs Debian's simple-whip-client and gcc: "
                           "apt-get install simple-whip-client gcc libc6-dev (scripts/setup.sh --test)")
    return path


def build_stub(out_dir: Path) -> Path:
    """The libgupnp-igd stand-in that lets the packaged client start (see the C file)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-Wl,-soname,libgupnp-igd-1.0.so.4", "-o",
                    str(out_dir / "libgupnp-igd-1.0.so.4"), str(STUB)], check=True, timeout=60)
    return out_dir


def whip_client(url: str, video_pipeline: str, stub_dir: Path, log: Path) -> subprocess.Popen:
    """Publish ``video_pipeline`` (ending in RTP caps) to ``url``; trickle ICE on, as by default."""
    env = {"LD_LIBRARY_PATH": str(stub_dir), "PATH": "/usr/bin:/bin", "GST_DEBUG": "0"}
    with log.open("wb") as out:
        return subprocess.Popen([require_whip_client(), "-u", url, "-V", video_pipeline, "-o"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
