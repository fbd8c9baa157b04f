"""Debian's simple-whip-client (GStreamer webrtcbin) as a child process, for the WHIP test."""
from __future__ import annotations

import fcntl
import shutil
import socket
import struct
import subprocess
from pathlib import Path

STUB = Path(__file__).resolve().parent / "native" / "gupnp_igd_stub.c"
SIOCGIFADDR = 0x8915


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


def local_ipv4() -> list[str]:
    """This machine's non-loopback IPv4 addresses.

    libnice offers loopback candidates only when nothing else exists, and does not
    check from its interface address to 127.0.0.1, so the server must also offer
    the address libnice uses. Packets between two local addresses never leave the
    machine.
    """
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:  # no IPv4 address on this interface
                continue
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127."):
                found.append(address)
    return found


def whip_client(url: str, video_pipeline: str, stub_dir: Path, log: Path) -> subprocess.Popen:
    """Publish ``video_pipeline`` (ending in RTP caps) to ``url``; trickle ICE on, as by default."""
    env = {"LD_LIBRARY_PATH": str(stub_dir), "PATH": "/usr/bin:/bin", "GST_DEBUG": "0"}
    with log.open("wb") as out:
        return subprocess.Popen([require_whip_client(), "-u", url, "-V", video_pipeline, "-o"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
