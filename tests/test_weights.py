"""Weight resolution: explicit path, env var, models dir, cache, download checks, clear errors."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from matting import weights
from matting.weights import WeightsError

SHARED_MODELS = Path(__file__).resolve().parent.parent.parent / "shared" / "models"


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"ABRAR_CACHE_DIR": str(tmp_path / "cache"), **extra}


def test_explicit_path_wins(tmp_path):
    f = tmp_path / "mine.pth"
    f.write_bytes(b"x")
    e = env(tmp_path, ABRAR_MODELS_DIR=str(SHARED_MODELS))
    assert weights.resolve("rvm", f, download=False, environ=e) == f


def test_env_var_points_to_file(tmp_path):
    f = tmp_path / "rvm.pth"
    f.write_bytes(b"x")
    assert weights.resolve("rvm", download=False, environ=env(tmp_path, ABRAR_RVM_WEIGHTS=str(f))) == f


def test_env_var_to_missing_file_is_an_error(tmp_path):
    with pytest.raises(WeightsError, match="ABRAR_RVM_WEIGHTS points to"):
        weights.resolve("rvm", download=False, environ=env(tmp_path, ABRAR_RVM_WEIGHTS=str(tmp_path / "nope")))


def test_models_dir_accepts_official_and_compatible_names(tmp_path):
    e = env(tmp_path, ABRAR_MODELS_DIR=str(SHARED_MODELS))
    assert weights.resolve("rvm", download=False, environ=e).name == "rvm_mobilenetv3.pth"
    assert weights.resolve("rmbg", download=False, environ=e).name == "isnet_general_fp16.safetensors"


def test_models_folder_in_the_working_directory_then_models_dir_first(tmp_path, monkeypatch):
    local = tmp_path / "work" / "models"
    local.mkdir(parents=True)
    (local / "rvm_mobilenetv3.pth").write_bytes(b"x")
    monkeypatch.chdir(tmp_path / "work")
    found = weights.resolve("rvm", download=False, environ=env(tmp_path))
    assert found == Path.cwd() / "models" / "rvm_mobilenetv3.pth"
    # --models-dir (argument) and ABRAR_MODELS_DIR come before ./models
    found = weights.resolve("rvm", download=False, environ=env(tmp_path), models_dir=SHARED_MODELS)
    assert found.parent == SHARED_MODELS
    e = env(tmp_path, ABRAR_MODELS_DIR=str(SHARED_MODELS))
    assert weights.resolve("rvm", download=False, environ=e).parent == SHARED_MODELS
    # missing: every folder searched is named, and the download is a step for a connected machine
    with pytest.raises(WeightsError) as exc:
        weights.resolve("rmbg", download=False, environ=env(tmp_path))
    msg = str(exc.value)
    assert str(Path.cwd() / "models") in msg and "internet access" in msg


def test_cache_dir_is_searched(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "model.safetensors").write_bytes(b"x")
    assert weights.resolve("rmbg", download=False, environ=env(tmp_path)) == cache / "model.safetensors"


def test_missing_offline_says_what_to_put_where(tmp_path):
    with pytest.raises(WeightsError) as exc:
        weights.resolve("rmbg", download=False, environ=env(tmp_path))
    msg = str(exc.value)
    assert "Copy model.safetensors into" in msg and str(tmp_path / "cache") in msg
    assert "ABRAR_RMBG_WEIGHTS" in msg and "HF_TOKEN" in msg


class _Files(http.server.BaseHTTPRequestHandler):
    payload = b""
    status = 200

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(self.payload)))
        self.end_headers()
        self.wfile.write(self.payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def file_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _spec_for(server, monkeypatch, payload: bytes, **over):
    import hashlib

    _Files.payload, _Files.status = payload, over.pop("status", 200)
    spec = weights.ModelSpec(key="t", title="Test model", filename="t.bin", env_var="ABRAR_T",
                             url=f"http://127.0.0.1:{server.server_address[1]}/t.bin", licence="none",
                             size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    spec = weights.ModelSpec(**{**spec.__dict__, **over})
    monkeypatch.setitem(weights.MODELS, "t", spec)
    return spec


def test_download_verifies_and_lands_in_cache(tmp_path, file_server, monkeypatch):
    _spec_for(file_server, monkeypatch, b"weights" * 1000)
    seen = []
    path = weights.resolve("t", environ=env(tmp_path), progress=lambda d, t: seen.append((d, t)))
    assert path == tmp_path / "cache" / "t.bin" and path.read_bytes() == b"weights" * 1000
    assert seen[-1] == (7000, 7000)


def test_download_with_wrong_checksum_is_rejected_and_not_kept(tmp_path, file_server, monkeypatch):
    _spec_for(file_server, monkeypatch, b"tampered", sha256="0" * 64)
    with pytest.raises(WeightsError, match="sha256"):
        weights.resolve("t", environ=env(tmp_path))
    assert list((tmp_path / "cache").iterdir()) == []


def test_truncated_download_is_rejected(tmp_path, file_server, monkeypatch):
    _spec_for(file_server, monkeypatch, b"short", size=10_000)
    with pytest.raises(WeightsError, match="expected 10000"):
        weights.resolve("t", environ=env(tmp_path))


def test_gated_refusal_names_the_token(tmp_path, file_server, monkeypatch):
    _spec_for(file_server, monkeypatch, b"", status=401, hf_gated=True)
    with pytest.raises(WeightsError, match="no HF_TOKEN is set"):
        weights.resolve("t", environ=env(tmp_path))


def test_unreachable_host_reads_as_offline(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spec = weights.ModelSpec(key="t", title="Test model", filename="t.bin", env_var="ABRAR_T",
                             url=f"http://127.0.0.1:{port}/t.bin", licence="none")
    monkeypatch.setitem(weights.MODELS, "t", spec)
    with pytest.raises(WeightsError, match="offline"):
        weights.resolve("t", environ=env(tmp_path))
