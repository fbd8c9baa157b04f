"""Run part of a test inside a fresh network namespace of its own.

Some peers (libnice, under GStreamer's webrtcbin) will not use 127.0.0.1, yet tests
may only send packets to loopback or to test hosts in namespaces they create. So the
body runs on a thread that unshares its network namespace: its own `lo` and one
private address on a link that exists only there. Child processes started from that
thread (servers, clients) inherit the namespace, and it vanishes with the last of them;
nothing in it can reach the host's real network.
"""
from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest

CLONE_NEWNET = 0x40000000
PRIVATE_ADDRESS = "10.203.0.1"
T = TypeVar("T")


def _unshare_network() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)


def _add_private_link(address: str) -> None:
    """`lo` up, and ``address``/24 on a dummy link (or a veth pair where the kernel lacks dummy)."""
    _ip("link", "set", "lo", "up").check_returncode()
    made = _ip("link", "add", "abrar0", "type", "dummy")
    if made.returncode != 0:
        veth = _ip("link", "add", "abrar0", "type", "veth", "peer", "name", "abrar1")
        if veth.returncode != 0:
            raise RuntimeError(f"cannot create a dummy or veth link in a network namespace: "
                               f"{made.stderr.strip()}; {veth.stderr.strip()}")
        _ip("link", "set", "abrar1", "up").check_returncode()
    _ip("addr", "add", f"{address}/24", "dev", "abrar0").check_returncode()
    _ip("link", "set", "abrar0", "up").check_returncode()


def in_private_network(body: Callable[[str], T], address: str = PRIVATE_ADDRESS) -> T:
    """Return ``body(address)``, run in a new network namespace where ``address`` is a local host.

    Skips the test when namespaces are unavailable (not root); re-raises what ``body`` raises.
    """
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            _unshare_network()
        except OSError as exc:
            outcome["unavailable"] = exc
            return
        try:
            _add_private_link(address)
            outcome["value"] = body(address)
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="private-network")
    thread.start()
    thread.join()
    if "unavailable" in outcome:
        exc = outcome["unavailable"]
        if isinstance(exc, OSError) and exc.errno in (errno.EPERM, errno.EINVAL, errno.ENOSYS):
            pytest.skip(f"network namespaces are unavailable here (unshare(CLONE_NEWNET): {exc}); "
                        "run as root or with CAP_SYS_ADMIN")
        raise exc  # type: ignore[misc]
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
