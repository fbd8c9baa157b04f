"""Whole-file matting: probing and its errors, the threaded pipeline (cancel, errors,
progress, audio), and a real end-to-end run with RVM on a slice of the real clip."""
from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from matting.compositing import NAMED_COLORS, Background, parse_background
from matting.result import MatteResult
from matting.video_file import (
    VideoCancelled,
    VideoInputError,
    VideoOptions,
    check_output,
    matte_video_file,
    probe_video,
)
from matting.video_io import OpaqueVideoWriter, read_alpha_frames
from test_video_io import decoded_audio, make_clip, peak_hz

SMALL = (256, 144)


class DiscSession:
    """Plumbing stand-in for VideoMattingSession: alpha is a fixed centred disc."""

    def __init__(self, fail_at: int | None = None):
        self.calls = 0
        self.fail_at = fail_at

    def process(self, rgb: np.ndarray) -> MatteResult:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("inference blew up")
        h, w = rgb.shape[:2]
        yy, xx = np.mgrid[:h, :w]
        alpha = (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (h / 3) ** 2).astype(np.float32)
        return MatteResult(alpha=alpha, foreground=rgb.astype(np.float32) / 255)


@pytest.fixture(scope="module")
def clip(media, tmp_path_factory) -> Path:
    """30 real frames at 256x144 with a 440 Hz AAC tone."""
    return make_clip(media, tmp_path_factory.mktemp("clips") / "clip.mp4", frames=30, size=SMALL)


def test_probe_real_clip(media, clip):
    info = probe_video(next((media / "video").glob("*.mp4")))
    assert (info.width, info.height, info.frames, info.has_audio, info.codec) == (640, 360, 240, False, "h264")
    assert info.fps == pytest.approx(29.97, abs=0.01) and info.duration == pytest.approx(8.0, abs=0.05)
    small = probe_video(clip)
    assert (small.width, small.height, small.frames, small.has_audio) == (256, 144, 30, True)


def audio_only_file(path: Path) -> Path:
    """A valid AAC file with no video stream."""
    with av.open(str(path), "w") as out:
        s = out.add_stream("aac", rate=48000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, 0
        out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


def _frames_cut_off(path: Path) -> None:
    """An MP4 whose index (moov, written first) lists frames whose data is gone."""
    with OpaqueVideoWriter(path, 64, 64, audio=False, realtime=False) as writer:
        for _ in range(5):
            writer.write_video(np.full((64, 64, 3), 128, np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[:data.index(b"mdat") + 4])


@pytest.mark.parametrize("make, message", [
    (lambda p: p.with_suffix(".mp4").write_bytes(b"") and None, "empty file"),
    (lambda p: p.with_suffix(".mp4").write_bytes(np.random.default_rng(0).bytes(50_000)), "not a video file"),
    (lambda p: audio_only_file(p.with_suffix(".m4a")), "no video stream .audio-only"),
    (lambda p: _frames_cut_off(p.with_suffix(".mp4")), "no frames"),
    (lambda p: p.with_suffix(".txt").write_text("just some words\n" * 100), "not a video|still image or text"),
    (lambda p: None, "no such file"),
])
def test_probe_bad_input(tmp_path, make, message):
    make(tmp_path / "bad")
    found = [p for p in tmp_path.iterdir()] or [tmp_path / "missing.mp4"]
    with pytest.raises(VideoInputError, match=message) as err:
        probe_video(found[0])
    print(f"{found[0].name}: {err.value}")


def test_probe_limits(clip):
    with pytest.raises(VideoInputError, match="256x144, over the limit"):
        probe_video(clip, max_pixels=10_000)
    with pytest.raises(VideoInputError, match="over the limit of 0 s"):
        probe_video(clip, max_duration=0.5)


def test_check_output():
    transparent = VideoOptions(Background("transparent"))
    assert check_output("a.webm", transparent) == "webm" and check_output("a.MOV", transparent) == "mov"
    with pytest.raises(ValueError, match=r"\.webm .*\.mov"):
        check_output("a.mp4", transparent)
    with pytest.raises(ValueError, match="unsupported output"):
        check_output("a.avi", VideoOptions(parse_background("green")))
    with pytest.raises(ValueError, match="bad bitrate"):
        check_output("a.mp4", VideoOptions(parse_background("green"), bitrate="lots"))
    with pytest.raises(ValueError, match="output folder .*nowhere does not exist"):
        check_output("/nowhere/a.webm", transparent)


def test_pipeline_alpha_webm_with_audio_and_progress(tmp_path, clip):
    seen = []
    result = matte_video_file(clip, tmp_path / "out.webm", DiscSession(), VideoOptions(Background("transparent")),
                              progress=seen.append)
    assert (result.frames, result.has_alpha, result.has_audio) == (30, True, True)
    assert [p.frames_done for p in seen] == list(range(1, 31)) and seen[-1].eta_s == 0
    assert all(p.frames_total == 30 and p.fps > 0 for p in seen)
    frames = list(read_alpha_frames(result.output))
    expected = DiscSession().process(np.zeros((144, 256, 3), np.uint8)).alpha * 255
    err = np.mean([np.abs(f[..., 3].astype(float) - expected).mean() for f in frames])
    assert len(frames) == 30 and err < 3
    pcm, rate, codec = decoded_audio(result.output)  # AAC in, Opus out (WebM takes no AAC)
    assert codec == "opus" and abs(pcm.shape[1] / rate - 1.0) < 0.06 and abs(peak_hz(pcm[0], rate) - 440) < 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.webm"]  # no temp file left


def test_pipeline_green_mp4_copies_aac(tmp_path, clip):
    result = matte_video_file(clip, tmp_path / "out.mp4", DiscSession(), VideoOptions(parse_background("green")))
    with av.open(str(clip)) as src, av.open(str(result.output)) as out:
        assert out.streams.video[0].codec_context.name == "h264"
        src_sizes = [p.size for p in src.demux(audio=0) if p.dts is not None]
        assert [p.size for p in out.demux(audio=0) if p.dts is not None] == src_sizes  # copied, not re-encoded
    with av.open(str(result.output)) as out:
        frame = next(out.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(frame[2, 2].astype(int) - NAMED_COLORS["green"]).max() < 12  # outside the disc: green
    no_audio = matte_video_file(clip, tmp_path / "silent.mp4", DiscSession(),
                                VideoOptions(parse_background("#ff0000"), keep_audio=False))
    assert not no_audio.has_audio


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg CLI to tag a rotation")
def test_rotated_input_comes_out_upright(tmp_path, clip):
    rotated = tmp_path / "rot.mp4"   # same pixels, display matrix "rotate 90"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", "-metadata:s:v", "rotate=90",
                    str(rotated)], check=True, timeout=60)
    info = probe_video(rotated)
    assert (info.width, info.height) == (144, 256)
    result = matte_video_file(rotated, tmp_path / "out.mp4", DiscSession(),
                              VideoOptions(parse_background("white"), keep_audio=False))
    with av.open(str(clip)) as src, av.open(str(result.output)) as out:
        upright = np.rot90(next(src.decode(video=0)).to_ndarray(format="rgb24"))
        got = next(out.decode(video=0)).to_ndarray(format="rgb24")
    assert got.shape == upright.shape
    centre = (slice(100, 156), slice(50, 94))   # inside the disc: the frame itself
    assert np.abs(got[centre].astype(int) - upright[centre]).mean() < 6


def test_cancel_stops_and_removes_partial(tmp_path, clip):
    cancel = threading.Event()

    def progress(p):
        if p.frames_done == 5:
            cancel.set()

    with pytest.raises(VideoCancelled):
        matte_video_file(clip, tmp_path / "out.webm", DiscSession(), VideoOptions(Background("transparent")),
                         progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def test_session_error_propagates_and_cleans_up(tmp_path, clip):
    with pytest.raises(RuntimeError, match="inference blew up"):
        matte_video_file(clip, tmp_path / "out.mp4", DiscSession(fail_at=7), VideoOptions(parse_background("blue")))
    assert list(tmp_path.iterdir()) == []


def test_damaged_input_is_a_clear_error(tmp_path, clip):
    src = tmp_path / "src.mp4"   # index first (faststart), so damage hits only the frame data
    with av.open(str(clip)) as inp, OpaqueVideoWriter(src, *SMALL, audio=False, realtime=False) as writer:
        for frame in inp.decode(video=0):
            writer.write_video(frame.to_ndarray(format="rgb24"))
    data = bytearray(src.read_bytes())
    start = data.index(b"mdat") + 4
    cut = len(data) - (len(data) - start) // 4   # the last quarter of the frames' data: noise
    data[cut:] = np.random.default_rng(0).bytes(len(data) - cut)
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(bytes(data))
    out = tmp_path / "out.webm"
    try:
        result = matte_video_file(bad, out, DiscSession(), VideoOptions(Background("transparent")))
    except VideoInputError as exc:
        print(f"damaged input: {exc}")
        assert not out.exists()
    else:  # FFmpeg conceals some damage; then what was decodable must be there
        print(f"damaged input: {result.frames} frames recovered")
        assert 0 < result.frames <= 30 and out.exists()


# -- the real thing: RVM on the real clip ---------------------------------------------

class Tap:
    """Passes frames to the real session and keeps each alpha it returned."""

    def __init__(self, session):
        self.session = session
        self.alphas: list[np.ndarray] = []

    def process(self, rgb: np.ndarray) -> MatteResult:
        result = self.session.process(rgb)
        self.alphas.append(result.alpha)
        return result


@pytest.fixture(scope="module")
def rvm_clip(media, tmp_path_factory) -> Path:
    """30 frames of the real clip at 320x180 with a tone: small enough for a CPU run in CI."""
    return make_clip(media, tmp_path_factory.mktemp("rvm") / "clip.mp4", frames=30, size=(320, 180))


def test_real_rvm_alpha_webm_and_green_mp4(runtime, rvm_clip, tmp_path):
    tap = Tap(runtime.new_session())
    webm = matte_video_file(rvm_clip, tmp_path / "person.webm", tap, VideoOptions(Background("transparent")))
    print(f"RVM 320x180 -> VP9 alpha WebM: {webm.frames} frames at {webm.fps:.1f} fps, stages "
          + ", ".join(f"{k} {v:.2f}s" for k, v in webm.stage_seconds.items()))
    assert webm.frames == 30 and webm.has_audio and len(tap.alphas) == 30
    back = [f[..., 3].astype(np.float32) / 255 for f in read_alpha_frames(webm.output)]
    assert len(back) == 30
    err = np.mean([np.abs(b - a).mean() for b, a in zip(back, tap.alphas, strict=False)]) * 255
    coverage = np.mean([(b > 0.5).mean() for b in back])
    print(f"RVM matte through VP9 WebM: alpha mean abs error {err:.2f}/255; person covers {coverage:.1%}")
    assert err < 1.5
    assert 0.05 < coverage < 0.7  # a seated person in a 16:9 frame, neither empty nor everything
    mp4 = matte_video_file(rvm_clip, tmp_path / "person.mp4", runtime.new_session(),
                           VideoOptions(parse_background("green")))
    assert mp4.frames == 30 and mp4.has_audio and not mp4.has_alpha
    with av.open(str(mp4.output)) as out:
        last = list(out.decode(video=0))[-1].to_ndarray(format="rgb24").astype(int)
    greenish = (np.abs(last - NAMED_COLORS["green"]).max(axis=2) < 30).mean()
    print(f"green MP4: {greenish:.1%} of the last frame is background green (alpha<0.5: {1 - coverage:.1%})")
    assert abs(greenish - (1 - coverage)) < 0.15
