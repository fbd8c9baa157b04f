"""Start the real `abrar serve` as a subprocess on 127.0.0.1, for tests that need a real process.

Generic on purpose (any feature's end-to-end test may use it): pass extra CLI flags
or env vars; the server log goes to a file so a full pipe never stalls the server.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerProcess:
    proc: subprocess.Popen
    port: int
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL: no cleanup handlers run, like a crash or an OOM kill."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(timeout)


def wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before it was healthy")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"server at {url} not healthy after {timeout:.0f} s (last error: {last})")


def start_server(data_dir: Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 port: int | None = None, timeout: float = 60.0) -> ServerProcess:
    """Run ``python -m server.cli serve`` on 127.0.0.1 and wait for /healthz."""
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    log_path = data_dir.parent / f"{data_dir.name}-server-{port}.log"
    full_env = {**os.environ, "ABRAR_DEVICE": "cpu", "PYTHONUNBUFFERED": "1", **(env or {})}
    cmd = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--data-dir", str(data_dir), *args]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=full_env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    server = ServerProcess(proc=proc, port=port, data_dir=data_dir, log_path=log_path)
    try:
        wait_healthy(server.url, proc, timeout)
    except BaseException as exc:  # noqa: BLE001 - never leave the process behind, then re-raise
        server.kill()
        raise RuntimeError(f"{exc}\n--- server log ---\n{server.log()}") from None
    return server


@contextmanager
def running_server(data_dir: Path, **kw) -> Iterator[ServerProcess]:
    server = start_server(data_dir, **kw)
    try:
        yield server
    finally:
        server.terminate()
