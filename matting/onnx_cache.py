"""ONNX models on disk, keyed by the hash of the weights they were made from.

Exporting RMBG takes seconds and calibrating an int8 model tens of seconds, so both are
done once per checkpoint and kept in ``<cache dir>/onnx/`` (beside the downloaded
weights, ``ABRAR_CACHE_DIR``). A changed checkpoint has another hash, hence other files;
a changed recipe bumps :data:`RECIPE`.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Mapping

from matting import weights

log = logging.getLogger(__name__)

# Part of every file name: bump it when an export or quantisation recipe changes.
RECIPE = "r6"


def onnx_dir(environ: Mapping[str, str] | None = None) -> Path:
    return weights.cache_dir(environ) / "onnx"


class OnnxCache:
    """ONNX files of one checkpoint: ``get(name, build)`` returns the cached bytes, or
    builds, stores (atomically: concurrent processes may build the same file) and returns them."""

    def __init__(self, checkpoint: Path, directory: Path | None = None):
        self.directory = directory or onnx_dir()
        self.prefix = f"{checkpoint.stem}-{weights.sha256_of(checkpoint)[:16]}"

    def path(self, name: str) -> Path:
        return self.directory / f"{self.prefix}-{name}-{RECIPE}.onnx"

    def get(self, name: str, build: Callable[[], bytes]) -> bytes:
        path = self.path(name)
        if path.is_file():
            return path.read_bytes()
        start = time.perf_counter()
        model = build()
        log.info("built %s in %.1f s", path.name, time.perf_counter() - start)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{path.name}.", suffix=".part")
        except OSError as exc:  # a read-only cache costs a rebuild next time, nothing more
            log.warning("could not cache %s: %s", path, exc)
            return model
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(model)
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            log.warning("could not cache %s: %s", path, exc)
        return model
