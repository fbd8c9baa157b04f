"""Video writers and alpha reading: alpha survives VP9 WebM, audio resampled and timed,
live (VFR) timestamps kept, files stay playable when the writer dies."""
from __future__ import annotations

import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from matting.video_io import (
    AlphaWebmWriter,
    OpaqueVideoWriter,
    VideoWriter,
    container_for,
    has_audio,
    parse_bitrate,
    read_alpha_frames,
)

H, W = 144, 256


def make_clip(media: Path, dst: Path, *, frames: int, size: tuple[int, int] | None = None,
              tone_hz: float | None = 440.0) -> Path:
    """The first ``frames`` frames of the real clip (optionally resized to (w, h)) as H.264 MP4,
    with a 44.1 kHz mono AAC sine tone muxed in (the dev clip itself has no audio)."""
    with av.open(str(next((media / "video").glob("*.mp4")))) as src, av.open(str(dst), "w") as out:
        rate = src.streams.video[0].average_rate
        vs = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "crf": "18"})
        vs.pix_fmt = "yuv420p"
        vs.width, vs.height = size or (src.streams.video[0].width, src.streams.video[0].height)
        if tone_hz:
            sr = 44100
            aus = out.add_stream("aac", rate=sr)
            aus.layout = "mono"
            n = round(frames / rate * sr)
            wave = (0.4 * np.sin(2 * np.pi * tone_hz * np.arange(n) / sr)).astype(np.float32)
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(wave[None, k:k + 1024].copy(), format="fltp", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, k, Fraction(1, sr)
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
        for i, frame in zip(range(frames), src.decode(video=0), strict=False):
            rgb = frame.to_ndarray(format="rgb24")
            if size:
                rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts, vf.time_base = i, 1 / rate
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return dst


def ramp_rgba(i: int = 0) -> np.ndarray:
    """Colour bars over a horizontal 0..255 alpha ramp (plus a moving bright square)."""
    rgba = np.zeros((H, W, 4), np.uint8)
    rgba[..., 0] = np.linspace(0, 255, W, dtype=np.uint8)[None]
    rgba[..., 1] = np.linspace(255, 0, H, dtype=np.uint8)[:, None]
    rgba[..., 2] = 90
    rgba[..., 3] = np.linspace(0, 255, W, dtype=np.uint8)[None]
    rgba[40:80, 10 + 4 * i:50 + 4 * i, :3] = 250
    return rgba


def tone(rate: int, samples: int, layout: str = "mono", fmt: str = "fltp", start: int = 0) -> av.AudioFrame:
    channels = 2 if layout == "stereo" else 1
    wave = 0.4 * np.sin(2 * np.pi * 440 * (start + np.arange(samples)) / rate)
    data = np.repeat(wave[None], channels, 0)
    data = (data * 32767).astype(np.int16) if fmt == "s16p" else data.astype(np.float32)
    frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
    frame.sample_rate = rate
    return frame


def decoded_audio(path: Path) -> tuple[np.ndarray, int, av.codec.context.CodecContext]:
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        chunks = [f.to_ndarray() for f in c.decode(stream)]
        return np.concatenate(chunks, axis=1), stream.sample_rate, stream.codec_context.name


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[spectrum.argmax()])


def test_alpha_round_trip_through_vp9_webm(tmp_path, media):
    """Known alpha (ramp) and a real matte (GT alpha + foreground of a dev photo) survive
    VP9 yuva420p in WebM, read back with libvpx; FFmpeg's native VP9 decoder would drop it."""
    with Image.open(media / "foregrounds" / "p3m_0a78cf02.png") as im:  # RGBA: colours + GT alpha
        real = np.asarray(im.resize((288, 432), Image.BILINEAR))
    ramps = [ramp_rgba(i) for i in range(12)]
    results = {}
    for name, frames in {"ramp": ramps, "real matte": [real] * 12}.items():
        path = tmp_path / f"{name.replace(' ', '_')}.webm"
        h, w = frames[0].shape[:2]
        with AlphaWebmWriter(path, w, h, fps=30, audio=False) as writer:
            for f in frames:
                writer.write_video(f)
        back = list(read_alpha_frames(path))
        assert len(back) == len(frames) and back[0].shape == (h, w, 4)
        err = np.mean([np.abs(b[..., 3].astype(int) - f[..., 3]).mean() for b, f in zip(back, frames, strict=False)])
        rgb_err = np.mean([np.abs(b[..., :3].astype(int) - f[..., :3]).mean()
                           for b, f in zip(back, frames, strict=False)])
        results[name] = err
        print(f"VP9 WebM crf 32 round trip, {name}: alpha mean abs error {err:.2f}/255, RGB {rgb_err:.2f}/255")
        assert err < 1.5 and rgb_err < 6
        with av.open(str(path)) as c:  # FFmpeg's own vp9 decoder: no alpha at all
            native = next(c.decode(video=0)).to_ndarray(format="rgba")
        assert native[..., 3].min() == 255
    edge = np.abs(back[0][..., 3].astype(int) - real[..., 3])[(real[..., 3] > 0) & (real[..., 3] < 255)]
    print(f"  fractional (hair) pixels of the real matte: alpha mean abs error {edge.mean():.2f}/255")


def test_prores_4444_mov_keeps_alpha(tmp_path):
    path = tmp_path / "a.mov"
    with VideoWriter(path, W, H, alpha=True, audio=False) as writer:
        for i in range(3):
            writer.write_video(ramp_rgba(i))
    back = list(read_alpha_frames(path))
    assert len(back) == 3
    assert np.abs(back[1][..., 3].astype(int) - ramp_rgba(1)[..., 3]).max() <= 1


def test_audio_any_format_resampled_to_48k_stereo_opus(tmp_path):
    """44.1 kHz mono float, 16 kHz stereo s16 and 48 kHz stereo in one stream: one continuous 440 Hz tone."""
    path = tmp_path / "a.webm"
    parts = [(44100, "mono", "fltp"), (16000, "stereo", "s16p"), (48000, "stereo", "fltp")]
    with AlphaWebmWriter(path, W, H, fps=30) as writer:
        for i in range(90):
            writer.write_video(ramp_rgba(i % 12))
        for rate, layout, fmt in parts:       # 1 s of each, in 20 ms frames
            for k in range(0, rate, rate // 50):
                writer.write_audio(tone(rate, rate // 50, layout, fmt, start=k))
    pcm, rate, codec = decoded_audio(path)
    assert (codec, rate, pcm.shape[0]) == ("opus", 48000, 2)
    seconds = pcm.shape[1] / rate
    print(f"audio written 3.000 s, read back {seconds:.3f} s")
    assert abs(seconds - 3.0) < 0.05
    for second in range(3):
        chunk = pcm[0, second * rate + 2400:(second + 1) * rate - 2400]
        assert abs(peak_hz(chunk, rate) - 440) < 3
        assert 0.2 < np.abs(chunk).max() < 0.6


def _audio_packet_times(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.array([float(p.pts * p.time_base) for p in c.demux(audio=0) if p.pts is not None])


def test_audio_dropout_kept_but_arrival_jitter_ignored(tmp_path):
    """Source pts say 0.5 s were lost: the gap stays. Arrival times (t) jitter by up to
    0.3 s with contiguous pts: the audio stays contiguous, it does not drift later."""
    path = tmp_path / "gap.webm"
    jitter = np.random.default_rng(0).uniform(0, 0.3, 50)
    with AlphaWebmWriter(path, W, H) as writer:
        writer.write_video(ramp_rgba())
        for k in list(range(25)) + list(range(50, 75)):   # frames 25-49 (0.5-1.0 s) lost
            frame = tone(48000, 960, start=k * 960)
            frame.pts, frame.time_base = 123_456 + k * 960, Fraction(1, 48000)  # an RTP-like clock
            writer.write_audio(frame, t=0.2 + k * 0.02 + jitter[k % 50])
    times = _audio_packet_times(path)
    assert times[0] == pytest.approx(0.2 + jitter[0], abs=0.01)   # (Opus pre-skip: packets start 6.5 ms early)
    jumps = np.diff(times)
    assert jumps.max() == pytest.approx(0.52, abs=0.02)     # the one 0.5 s hole (+ a 20 ms frame)
    assert np.allclose(jumps[jumps < 0.1], 0.02, atol=0.001)
    assert times[-1] - times[0] == pytest.approx(1.48, abs=0.03)  # 75 frames of 20 ms, no drift


def test_audio_clock_restart_replaced_by_t(tmp_path):
    path = tmp_path / "restart.webm"
    with AlphaWebmWriter(path, W, H) as writer:
        writer.write_video(ramp_rgba())
        for k, (pts, t) in enumerate([(10**9, 0.0), (10**9 + 960, 0.02), (5, 2.0), (965, 2.02)]):
            frame = tone(48000, 960, start=k * 960)
            frame.pts, frame.time_base = pts, Fraction(1, 48000)
            writer.write_audio(frame, t=t)
    times = _audio_packet_times(path)
    assert times[0] == pytest.approx(0.0, abs=0.01) and times[-1] == pytest.approx(2.02, abs=0.03)


def test_live_timestamps_and_resizing(tmp_path):
    path = tmp_path / "vfr.webm"
    stamps = [0.0, 0.05, 0.07, 0.07, 0.5, 0.48, 1.0]  # irregular, one repeat, one late
    with AlphaWebmWriter(path, W, H, audio=False) as writer:
        for i, t in enumerate(stamps):
            frame = ramp_rgba(i)
            writer.write_video(cv2.resize(frame, (W * 2, H * 2)) if i == 2 else frame, t)
    with av.open(str(path)) as c:
        pts = sorted(p.pts for p in c.demux(video=0) if p.pts is not None)
    assert pts == [0, 50, 70, 71, 500, 501, 1000]
    back = list(read_alpha_frames(path))
    assert all(b.shape == (H, W, 4) for b in back)


@pytest.mark.parametrize("suffix, vcodec, acodec", [(".mp4", "h264", "aac"), (".webm", "vp9", "opus"),
                                                   (".mov", "h264", "aac")])
def test_opaque_writers(tmp_path, suffix, vcodec, acodec):
    path = tmp_path / f"o{suffix}"
    with OpaqueVideoWriter(path, W + 1, H + 1, fps=25, realtime=False) as writer:  # odd sizes crop to even
        assert (writer.width, writer.height) == (W, H)
        for i in range(25):
            writer.write_video(ramp_rgba(i)[..., :3])
            writer.write_audio(tone(48000, 1920, "stereo", start=i * 1920))
    with av.open(str(path)) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.audio[0].codec_context.name) == (vcodec, acodec)
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(first.astype(int) - ramp_rgba(0)[..., :3]).mean() < 6
    assert has_audio(path)


def test_audio_packets_copied(tmp_path, media):
    src = make_clip(media, tmp_path / "src.mp4", frames=15, size=(W, H))
    dst = tmp_path / "copy.mp4"
    with av.open(str(src)) as inp:
        audio_in = inp.streams.audio[0]
        with OpaqueVideoWriter(dst, W, H, realtime=False, copy_audio_from=audio_in) as writer:
            writer.write_video(ramp_rgba())
            copied = [p for p in inp.demux(audio_in) if p.dts is not None]
            sizes = [p.size for p in copied]
            for p in copied:
                writer.write_audio_packet(p)
    with av.open(str(dst)) as out:
        assert [p.size for p in out.demux(audio=0) if p.dts is not None] == sizes


def test_two_producer_threads(tmp_path):
    path = tmp_path / "threads.webm"
    with AlphaWebmWriter(path, W, H) as writer:
        audio = threading.Thread(target=lambda: [writer.write_audio(tone(48000, 960, "stereo", start=k * 960))
                                                 for k in range(100)])
        audio.start()
        for i in range(60):
            writer.write_video(ramp_rgba(i % 12))
        audio.join()
    pcm, _, _ = decoded_audio(path)
    assert len(list(read_alpha_frames(path))) == 60 and pcm.shape[1] == pytest.approx(96000, abs=960)


def test_killed_writer_leaves_a_playable_webm(tmp_path):
    """A process that dies without close() keeps all but about the last second of a live
    recording (WebM clusters of 1 s, flushed at once)."""
    path = tmp_path / "killed.webm"
    script = (
        "import os, sys, numpy as np\n"
        "from test_video_io import tone\n"
        "from matting.video_io import AlphaWebmWriter\n"
        f"w = AlphaWebmWriter(sys.argv[1], {W}, {H}, fps=30)\n"
        "for i in range(90):\n"
        f"    a = np.zeros(({H}, {W}, 4), np.uint8); a[..., 3] = i; w.write_video(a)\n"
        "    w.write_audio(tone(48000, 1600, start=i * 1600))\n"
        "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, cwd=REPO / "tests", timeout=60)
    frames = list(read_alpha_frames(path))
    print(f"killed after 90 frames (3 s): {len(frames)} readable")
    assert len(frames) >= 30 and [int(f[0, 0, 3]) for f in frames[:30]] == pytest.approx(list(range(30)), abs=2)


def test_close_is_idempotent_and_final(tmp_path):
    writer = AlphaWebmWriter(tmp_path / "c.webm", W, H, audio=False)
    writer.write_video(ramp_rgba())
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.write_video(ramp_rgba())
    empty = tmp_path / "empty.webm"
    AlphaWebmWriter(empty, W, H).close()
    assert empty.stat().st_size > 0  # the header is written up front


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="cannot hold transparency"):
        VideoWriter(tmp_path / "x.mp4", W, H, alpha=True)
    with pytest.raises(ValueError, match="unsupported output"):
        container_for(tmp_path / "x.avi")
    with pytest.raises(ValueError, match="bad bitrate"):
        parse_bitrate("fast")
    assert parse_bitrate("2M") == 2_000_000 and parse_bitrate("800k") == 800_000
    with AlphaWebmWriter(tmp_path / "y.webm", W, H, audio=False) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write_video(np.zeros((H, W, 4), np.float32))
        with pytest.raises(RuntimeError, match="no audio"):
            writer.write_audio(tone(48000, 960))
