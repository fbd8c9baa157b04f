"""Shared fixtures: real weights and real media from ../shared, through the user's resolver."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", REPO.parent / "shared")).resolve()
MEDIA = SHARED / "media"
ARTIFACTS = REPO / "test-artifacts"

# Tests use the same resolver users get: point it at ../shared/models unless the
# caller (e.g. .ci/run) already did.
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))
# Never reach for the internet from tests.
os.environ.setdefault("ABRAR_DOWNLOAD", "false")
# WebRTC in tests stays on loopback: server subprocesses read the env var, and the
# in-process peers (servers under test and aiortc clients) share this process.
os.environ.setdefault("ABRAR_ICE_ADDRESSES", "127.0.0.1")

from server.ice import use_host_addresses  # noqa: E402

use_host_addresses(os.environ["ABRAR_ICE_ADDRESSES"].split(","))


def pytest_configure(config):
    ARTIFACTS.mkdir(exist_ok=True)


@pytest.fixture(scope="session")
def media() -> Path:
    if not MEDIA.is_dir():
        pytest.fail(f"test media not found at {MEDIA}; set ABRAR_SHARED_DIR")
    return MEDIA


@pytest.fixture(scope="session")
def artifacts() -> Path:
    return ARTIFACTS


@pytest.fixture(scope="session")
def postgres():
    """A throwaway PostgreSQL cluster on 127.0.0.1 for the tests that need one (created on first use)."""
    from postgres_support import PostgresServer

    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def runtime():
    """One CPU runtime for the whole test run (models load once)."""
    from matting.runtime import MattingRuntime, RuntimeConfig

    return MattingRuntime(RuntimeConfig(device="cpu", download=False))


@pytest.fixture(scope="session")
def dev_alphas(runtime, media) -> dict[str, dict[str, np.ndarray]]:
    """RVM's still-image alpha and RMBG's alpha of every dev photo with ground truth,
    computed once for all the quality tests (about 4 s a photo on a 2-core CPU)."""
    from matting.still import rvm_still_alpha

    return {image.stem: {"rvm": rvm_still_alpha(runtime.video_model(), rgb), "rmbg": runtime.cutout(rgb)}
            for image in sorted((media / "images").iterdir()) for rgb in [load_rgb(image)]}


def load_rgb(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def load_alpha(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
