"""Find model checkpoints: explicit path or env var, models dir, cache, then download.

Checkpoints are never bundled. Resolution order for each model:
1. an explicit path (argument, or the model's own env var such as ``ABRAR_RVM_WEIGHTS``);
2. the models dir: ``--models-dir`` / ``ABRAR_MODELS_DIR`` (any of the model's accepted
   file names);
3. ``models/`` in the working directory (where a newcomer puts what they downloaded);
4. the cache dir (``ABRAR_CACHE_DIR``, default ``~/.cache/abrar/models``);
5. a download from the official URL into the cache, checked against the published
   size and sha256 where upstream publishes them.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping


class WeightsError(RuntimeError):
    """A checkpoint could not be found, fetched or verified; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    key: str
    title: str
    filename: str
    url: str
    env_var: str
    licence: str
    # Other file names accepted in the models dir (e.g. compatible re-exports).
    aliases: tuple[str, ...] = ()
    size: int | None = None
    sha256: str | None = None
    hf_gated: bool = False


MODELS: dict[str, ModelSpec] = {
    "rvm": ModelSpec(
        key="rvm",
        title="Robust Video Matting, MobileNetV3",
        filename="rvm_mobilenetv3.pth",
        url="https://github.com/PeterL1n/RobustVideoMatting/releases/download/v1.0.0/rvm_mobilenetv3.pth",
        env_var="ABRAR_RVM_WEIGHTS",
        licence="GPL-3.0",
    ),
    "rmbg": ModelSpec(
        key="rmbg",
        title="BRIA RMBG-1.4 (IS-Net)",
        filename="model.safetensors",
        url="https://huggingface.co/briaai/RMBG-1.4/resolve/main/model.safetensors",
        env_var="ABRAR_RMBG_WEIGHTS",
        licence="BRIA RMBG-1.4 non-commercial licence",
        aliases=("rmbg-1.4.safetensors", "RMBG-1.4.safetensors", "isnet_general_fp16.safetensors"),
        size=176381984,
        sha256="46ef7fe46f2ae284d8f1aaa24bfa5fca5ef25a34e2c7caa890a0029eb100e87f",
        hf_gated=True,
    ),
}

MODELS_DIR_ENV = "ABRAR_MODELS_DIR"
LOCAL_MODELS_DIR = Path("models")
CACHE_DIR_ENV = "ABRAR_CACHE_DIR"
HF_TOKEN_ENVS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

Progress = Callable[[int, int | None], None]


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    if environ.get(CACHE_DIR_ENV):
        return Path(environ[CACHE_DIR_ENV]).expanduser()
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "abrar" / "models"


def _spec(key: str) -> ModelSpec:
    try:
        return MODELS[key]
    except KeyError:
        raise WeightsError(f"unknown model {key!r}; known: {', '.join(MODELS)}") from None


def _names(spec: ModelSpec) -> tuple[str, ...]:
    return (spec.filename, *spec.aliases)


def search_dirs(environ: Mapping[str, str] | None = None, models_dir: str | Path | None = None) -> list[Path]:
    """The folders searched for checkpoints, in order: the models dir (argument, else
    ``ABRAR_MODELS_DIR``), ``./models``, the cache."""
    environ = os.environ if environ is None else environ
    given = models_dir or environ.get(MODELS_DIR_ENV)
    dirs = [Path(given).expanduser()] if given else []
    dirs += [Path.cwd() / LOCAL_MODELS_DIR, cache_dir(environ)]
    return list(dict.fromkeys(dirs))


def find_local(key: str, explicit: str | Path | None = None,
               environ: Mapping[str, str] | None = None, models_dir: str | Path | None = None) -> Path | None:
    """The first existing checkpoint for ``key`` without downloading, or None."""
    environ = os.environ if environ is None else environ
    spec = _spec(key)
    given = explicit or environ.get(spec.env_var)
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            source = "argument" if explicit else spec.env_var
            raise WeightsError(f"{spec.title}: {source} points to {path}, which is not a file")
        return path
    for d in search_dirs(environ, models_dir):
        for name in _names(spec):
            if (d / name).is_file():
                return d / name
    return None


def resolve(key: str, explicit: str | Path | None = None, *, download: bool = True,
            environ: Mapping[str, str] | None = None, progress: Progress | None = None,
            models_dir: str | Path | None = None) -> Path:
    """Path to a checkpoint for ``key``, downloading it into the cache if allowed."""
    environ = os.environ if environ is None else environ
    found = find_local(key, explicit, environ, models_dir)
    if found is not None:
        return found
    if not download:
        raise WeightsError(missing_message(key, environ, models_dir))
    return fetch(key, environ=environ, progress=progress, models_dir=models_dir)


def missing_message(key: str, environ: Mapping[str, str] | None = None,
                    models_dir: str | Path | None = None) -> str:
    """What to do about a missing checkpoint: where to put the file (works offline), and
    the download only as a step for a machine with internet access."""
    spec = _spec(key)
    dirs = search_dirs(environ, models_dir)
    where = ", ".join(str(d) for d in dirs)
    hint = (" It is gated on Hugging Face: accept the licence at https://huggingface.co/briaai/RMBG-1.4, "
            "then download it with HF_TOKEN set." if spec.hf_gated else "")
    return (f"{spec.title} weights not found. Copy {spec.filename} into one of: {where} "
            f"(searched in that order; --models-dir or {MODELS_DIR_ENV} names another folder), "
            f"or point {spec.env_var} at the file. To get the file, on a machine with internet access: "
            f"`abrar models --download {key}`, or fetch {spec.url}.{hint}")


def fetch(key: str, *, environ: Mapping[str, str] | None = None, progress: Progress | None = None,
          timeout: float = 30.0, models_dir: str | Path | None = None) -> Path:
    """Download ``key`` into the cache, verifying size and sha256; atomic on success."""
    environ = os.environ if environ is None else environ
    spec = _spec(key)
    dest = cache_dir(environ) / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    request = urllib.request.Request(spec.url, headers={"User-Agent": "abrar"})
    token = next((environ[e] for e in HF_TOKEN_ENVS if environ.get(e)), None)
    if spec.hf_gated and token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403) and spec.hf_gated:
            why = "no HF_TOKEN is set" if not token else "the HF_TOKEN was refused"
            raise WeightsError(f"download of {spec.title} refused (HTTP {exc.code}): {why}. "
                               + missing_message(key, environ, models_dir)) from None
        raise WeightsError(f"download of {spec.title} failed: HTTP {exc.code}. "
                           + missing_message(key, environ, models_dir)) from None
    except (urllib.error.URLError, OSError) as exc:
        raise WeightsError(f"cannot download {spec.title} ({exc}); are you offline? "
                           + missing_message(key, environ, models_dir)) from None
    digest = hashlib.sha256()
    total = int(response.headers.get("Content-Length") or 0) or spec.size
    done = 0
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{spec.filename}.", suffix=".part")
    try:
        with response, os.fdopen(fd, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        verify_download(spec, done, digest.hexdigest())
        os.replace(tmp_name, dest)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return dest


def verify_download(spec: ModelSpec, size: int, sha256: str) -> None:
    if spec.size is not None and size != spec.size:
        raise WeightsError(f"{spec.title}: downloaded {size} bytes, expected {spec.size}; "
                           "the download was cut short or the file changed upstream")
    if spec.sha256 is not None and sha256 != spec.sha256:
        raise WeightsError(f"{spec.title}: sha256 {sha256} does not match the published {spec.sha256}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class CheckpointError(WeightsError):
    """A checkpoint file exists but is unreadable, truncated or of the wrong layout."""


def layout_problems(state: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """What keeps ``state`` from loading strictly into a model whose state dict is
    ``expected``: missing and unexpected keys and wrong shapes, the first few of each."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [f"{k} {tuple(state[k].shape)} in file, {tuple(v.shape)} expected"
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" and {len(items) - 3} more" if len(items) > 3 else ""
            problems.append(f"{len(items)} {label}: {', '.join(items[:3])}{more}")
    return problems
