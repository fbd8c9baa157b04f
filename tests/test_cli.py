"""`abrar remove-bg` and `abrar matte` as users run them: subprocesses, real weights, real media."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from conftest import REPO, load_alpha
from matting.metrics import mad
from matting.video_io import read_alpha_frames
from test_video_file import audio_only_file
from test_video_io import make_clip


def abrar(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    # ABRAR_MODELS_DIR / ABRAR_DOWNLOAD come from conftest through the environment
    return subprocess.run([sys.executable, "-m", "server.cli", *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def clip(media, tmp_path_factory) -> Path:
    return make_clip(media, tmp_path_factory.mktemp("cli") / "clip.mp4", frames=20, size=(320, 180))


def test_remove_bg_transparent_png(media, tmp_path):
    name = "comp_p3m_00a7a27c_architecture"
    out = tmp_path / "cut.png"
    run = abrar("remove-bg", media / "images" / f"{name}.jpg", "-o", out)
    assert run.returncode == 0, run.stderr
    assert "wrote" in run.stdout
    with Image.open(out) as im:
        assert im.mode == "RGBA" and im.size == (1620, 1080)
        alpha = np.asarray(im.getchannel("A"), np.float32) / 255
    score = mad(alpha, load_alpha(media / "alpha" / f"{name}.png"))
    print(f"abrar remove-bg {name}: MAD {score:.2f} (x1e3) against GT")
    assert score < 6.0  # auto (RVM) 1.9, RMBG 2.08 here; constant or inverted alpha scores > 300


def test_remove_bg_on_a_colour_to_jpeg(media, tmp_path):
    out = tmp_path / "cut.jpg"
    run = abrar("remove-bg", media / "images" / "comp_p3m_00a7a27c_architecture.jpg", "-o", out,
                "--background", "#0000ff")
    assert run.returncode == 0, run.stderr
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        rgb = np.asarray(im).astype(int)
    alpha = load_alpha(media / "alpha" / "comp_p3m_00a7a27c_architecture.png")
    assert np.abs(rgb[alpha == 0] - (0, 0, 255)).mean() < 12   # background pixels are blue now


def test_remove_bg_folders_into_a_folder_skipping_existing(media, tmp_path):
    import cv2

    shots = tmp_path / "shots"
    shots.mkdir()
    for name in ("comp_p3m_0a78cf02_porch", "comp_p3m_00a7a27c_porch"):
        small = cv2.resize(cv2.imread(str(media / "images" / f"{name}.jpg")), None, fx=0.2, fy=0.2)
        cv2.imwrite(str(shots / f"{name}.jpg"), small)
    (shots / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "cutouts"
    run = abrar("remove-bg", shots, "-o", out, "--model", "rvm", "--format", "mask", "--max-size", "200")
    assert run.returncode == 0, run.stderr
    assert "cutting out" in run.stderr and "2/2" in run.stderr  # the progress bar
    masks = sorted(p.name for p in out.iterdir())
    assert masks == ["comp_p3m_00a7a27c_porch.png", "comp_p3m_0a78cf02_porch.png"]
    for name in masks:
        with Image.open(out / name) as im:
            assert im.mode == "L" and max(im.size) == 200
            alpha = np.asarray(im, np.float32) / 255
        truth = cv2.resize(load_alpha(media / "alpha" / name), im.size, interpolation=cv2.INTER_AREA)
        assert mad(alpha, truth) < 30, name  # a person, not an empty or full mask (> 300)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = abrar("remove-bg", shots / "comp_p3m_0a78cf02_porch.jpg", shots, "-o", out, "--format", "mask",
                  timeout=60)
    assert again.returncode == 0 and "skipping 2" in again.stderr, again.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_models_exits_non_zero_when_a_model_is_missing(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "ABRAR_CACHE_DIR": str(tmp_path / "cache")}
    run = subprocess.run([sys.executable, "-m", "server.cli", "models"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False, env=env)
    print(run.stdout)
    assert run.returncode == 1 and "MISSING" in run.stdout
    assert str(tmp_path / "models") in run.stdout and "internet access" in run.stdout


# Each run starts an interpreter (~2 s); the full range of messages is covered in
# test_images / test_video_file, these check the exit code and that they reach the user.
@pytest.mark.parametrize("make, args, message", [
    (lambda d: d.joinpath("x.jpg").write_bytes(b"%PDF-1.4 not an image"), [], "not an image"),
    (lambda d: d.joinpath("x.jpg").write_bytes(b""), [], "empty"),
    (lambda d: Image.new("RGB", (8, 8)).save(d / "x.jpg"), ["-o", "{d}/y.jpg"], "JPEG has no transparency"),
])
def test_remove_bg_bad_input(tmp_path, make, args, message):
    make(tmp_path)
    args = [a.format(d=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "y.png"]
    run = abrar("remove-bg", tmp_path / "x.jpg", *out, *args, timeout=60)
    print(f"exit {run.returncode}: {run.stderr.strip()}")
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "y.png").exists()


def test_matte_transparent_webm_with_progress(clip, tmp_path):
    out = tmp_path / "person.webm"
    run = abrar("matte", clip, "-o", out)
    assert run.returncode == 0, run.stderr
    print(run.stderr.strip().splitlines()[-1].split("\r")[-1])
    assert "320x180, 20 frames" in run.stderr
    assert "20/20" in run.stderr and "frame/s" in run.stderr  # tqdm: frames done, rate
    assert "<00:" in run.stderr                               # tqdm: elapsed<remaining (ETA)
    frames = list(read_alpha_frames(out))
    coverage = np.mean([(f[..., 3] > 127).mean() for f in frames])
    assert len(frames) == 20 and 0.05 < coverage < 0.7
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "opus"


def test_matte_green_mp4_without_audio(clip, tmp_path):
    out = tmp_path / "person.mp4"
    run = abrar("matte", clip, "-o", out, "--background", "green", "--no-audio", "--downsample-ratio", "0.5")
    assert run.returncode == 0, run.stderr
    with av.open(str(out)) as c:
        assert not c.streams.audio and c.streams.video[0].codec_context.name == "h264"
        assert len(list(c.decode(video=0))) == 20


@pytest.mark.parametrize("make, args, message", [
    (lambda d: d.joinpath("x.mp4").write_bytes(np.random.default_rng(1).bytes(20_000)), [], "not a video file"),
    (lambda d: d.joinpath("x.mp4").write_bytes(b""), [], "empty file"),
    (lambda d: audio_only_file(d / "x.mp4"), [], "no video stream"),
    (None, ["-o", "{d}/y.mp4"], "cannot hold transparency"),
])
def test_matte_bad_input(tmp_path, clip, make, args, message):
    src = clip
    if make:
        make(tmp_path)
        src = tmp_path / "x.mp4"
    args = [a.format(d=tmp_path) for a in args]
    out = [] if "-o" in args else ["-o", tmp_path / "y.webm"]
    run = abrar("matte", src, *out, *args, timeout=60)
    print(f"exit {run.returncode}: {run.stderr.strip()}")
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert not list(tmp_path.glob("y.*"))
