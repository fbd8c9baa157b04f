"""Incremental video writers (live recording and file output) and alpha-aware reading.

Writers take frames as they come: video as RGB(A) uint8 with an optional
timestamp, audio as any ``av.AudioFrame`` (resampled here) or as source packets
copied unchanged. With ``realtime=True`` they use fast encoder settings and a
layout that stays playable if the process dies before ``close()``: WebM
clusters and fragmented MP4 flushed about every second.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

TIME_BASE = Fraction(1, 1000)      # Matroska's native tick; fine enough for MP4 too
AUDIO_RATE = 48000
SUFFIX_CONTAINERS = {".webm": "webm", ".mp4": "mp4", ".m4v": "mp4", ".mov": "mov"}
# source audio codecs each container takes as they are (copied, not re-encoded)
AUDIO_COPY = {"webm": {"opus", "vorbis"}, "mp4": {"aac", "mp3"}, "mov": {"aac", "mp3"}}


@dataclass(frozen=True)
class _Profile:
    video_codecs: tuple[str, ...]   # the first one this FFmpeg build has is used
    pix_fmt: str
    audio_codec: str


_H264 = ("libx264", "libopenh264", "mpeg4")
PROFILES = {
    ("webm", True): _Profile(("libvpx-vp9",), "yuva420p", "libopus"),
    ("webm", False): _Profile(("libvpx-vp9",), "yuv420p", "libopus"),
    ("mp4", False): _Profile(_H264, "yuv420p", "aac"),
    ("mov", False): _Profile(_H264, "yuv420p", "aac"),
    ("mov", True): _Profile(("prores_ks",), "yuva444p10le", "aac"),
}


def container_for(path: Path | str, container: str | None = None) -> str:
    """``webm``, ``mp4`` or ``mov``, from ``container`` or else the file suffix."""
    name = container or SUFFIX_CONTAINERS.get(Path(path).suffix.lower())
    if name not in ("webm", "mp4", "mov"):
        raise ValueError(f"unsupported output {container or Path(path).suffix or str(path)!r}; "
                         "use .webm (VP9, alpha possible), .mp4 (H.264) or .mov (ProRes 4444 alpha / H.264)")
    return name


def parse_bitrate(text: str) -> int:
    """``"2M"``, ``"800k"`` or ``"1500000"`` -> bits per second."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise ValueError(f"bad bitrate {text!r}; use a number of bits/s such as 800k or 2M")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value < 10_000:
        raise ValueError(f"bitrate {text!r} is too low (under 10k)")
    return int(value)


def _available(names: tuple[str, ...]) -> str:
    for name in names:
        try:
            av.codec.Codec(name, "w")
            return name
        except av.codec.codec.UnknownCodecError:
            continue
    raise RuntimeError(f"this FFmpeg build has none of the encoders {', '.join(names)}")


def _video_options(codec: str, crf: int | None, realtime: bool, constant_quality: bool) -> dict[str, str]:
    """Encoder options; ``constant_quality=False`` leaves rate control to ``bit_rate``."""
    if codec == "libvpx-vp9":
        # libvpx's "good" deadline is 4-6x slower than "realtime" for ~25 % smaller files, so
        # files too use the realtime deadline (at a slower speed step) to keep encoding from
        # being the slowest stage. Look-ahead gains nothing there and costs ~6 MB a frame at 1080p.
        quality = {"crf": str(32 if crf is None else crf), "b": "0"} if constant_quality else {}
        return {"deadline": "realtime", "cpu-used": "8" if realtime else "6", "lag-in-frames": "0",
                "row-mt": "1", **quality}
    if codec == "libx264":
        opts = {"preset": "ultrafast", "tune": "zerolatency"} if realtime else {"preset": "veryfast"}
        return {**opts, "crf": str(23 if crf is None else crf)} if constant_quality else opts
    if codec == "prores_ks":
        return {"profile": "4444", "vendor": "apl0"}
    return {}


class VideoWriter:
    """One output file; video and audio may come from two threads (a lock serialises muxing)."""

    def __init__(self, path: Path | str, width: int, height: int, *, alpha: bool,
                 container: str | None = None, fps: float = 30.0, audio: bool = True,
                 crf: int | None = None, bitrate: str | None = None, realtime: bool = True,
                 copy_audio_from: av.audio.stream.AudioStream | None = None):
        self.container = container_for(path, container)
        if (self.container, alpha) not in PROFILES:
            raise ValueError(f"{self.container} cannot hold transparency; use .webm (VP9) or .mov (ProRes 4444)")
        profile = PROFILES[(self.container, alpha)]
        self.path = Path(path)
        self.fps = float(fps)
        self.alpha = alpha
        chroma_420 = profile.pix_fmt.startswith(("yuv420", "yuva420"))
        # 4:2:0 needs even sizes; an odd source loses its last row/column
        self.width, self.height = (width - width % 2, height - height % 2) if chroma_420 else (width, height)
        if self.width < 2 or self.height < 2:
            raise ValueError(f"frame size {width}x{height} is too small")
        options = {}
        if realtime:
            options = {"flush_packets": "1", "max_interleave_delta": "1000000"}
            if self.container == "webm":
                options["cluster_time_limit"] = "1000"
            else:
                options["movflags"] = "+frag_keyframe+empty_moov+default_base_moof"
        elif self.container != "webm":
            options["movflags"] = "+faststart"
        self._out = av.open(str(path), "w", format=self.container, container_options=options)
        try:
            codec = _available(profile.video_codecs)
            rate = Fraction(self.fps).limit_denominator(1001)
            video = self._out.add_stream(codec, rate=rate, options=_video_options(codec, crf, realtime, not bitrate))
            assert isinstance(video, av.video.stream.VideoStream)  # codec is one of the profile's video encoders
            self._video = video
            self._video.width, self._video.height = self.width, self.height
            self._video.pix_fmt = profile.pix_fmt
            self._video.time_base = self._video.codec_context.time_base = TIME_BASE
            self._video.codec_context.gop_size = max(1, round(2 * self.fps))  # a keyframe every 2 s
            if bitrate:
                self._video.codec_context.bit_rate = parse_bitrate(bitrate)
            elif codec not in ("libvpx-vp9", "libx264", "prores_ks"):
                self._video.codec_context.bit_rate = 4_000_000
            self._audio: av.audio.stream.AudioStream | None = None
            self._copy_audio = copy_audio_from is not None
            if copy_audio_from is not None:
                self._audio = self._out.add_stream_from_template(copy_audio_from)
            elif audio:
                audio_stream = self._out.add_stream(profile.audio_codec, rate=AUDIO_RATE)
                assert isinstance(audio_stream, av.audio.stream.AudioStream)  # an audio encoder's stream
                audio_stream.layout = "stereo"
                audio_stream.codec_context.bit_rate = 96_000 if profile.audio_codec == "libopus" else 128_000
                self._audio = audio_stream
            self._out.start_encoding()  # header now: the file exists (and plays) from the start
        except Exception:
            self._out.close()
            raise
        self._lock = threading.Lock()
        self._closed = False
        self.frames = 0
        self._last_pts = -1
        self._resampler: av.AudioResampler | None = None
        self._audio_in: tuple | None = None         # (format, layout, rate) the resampler was made for
        self._audio_pts: int | None = None          # next output sample, in 1/48000 s
        self._audio_source_next: float | None = None  # where the source's next frame should start

    @property
    def has_audio(self) -> bool:
        return self._audio is not None

    def write_video(self, image: np.ndarray, t: float | None = None) -> None:
        """Encode one RGB/RGBA uint8 frame shown at ``t`` seconds (None: frame index / fps)."""
        image = self._fit(image)
        frame = av.VideoFrame.from_ndarray(image, format="rgba" if image.shape[2] == 4 else "rgb24")
        with self._lock:
            if self._closed:
                raise RuntimeError("writer is closed")
            pts = round((self.frames / self.fps if t is None else t) / TIME_BASE)
            pts = max(pts, self._last_pts + 1)   # late or duplicate timestamps must still increase
            frame.pts, frame.time_base = pts, TIME_BASE
            self._out.mux(self._video.encode(frame))
            self._last_pts = pts
            self.frames += 1

    def write_audio(self, frame: av.AudioFrame, t: float | None = None) -> None:
        """Encode audio of any format/rate/layout; ``t`` is when it starts, in seconds.

        ``t`` places the first frame; later frames follow on contiguously, so
        arrival jitter never stretches the audio. Where the frame's own timestamps
        jump ahead by 0.1-5 s (lost packets) the gap is kept, so a dropout stays a
        dropout. A larger or backward jump means the source's clock restarted:
        then ``t`` (if given) re-places the audio.
        """
        with self._lock:
            if self._closed:
                raise RuntimeError("writer is closed")
            if self._audio is None or self._copy_audio:
                raise RuntimeError("this writer has no audio stream to encode into")
            sig = (frame.format.name, frame.layout.name, frame.sample_rate)
            resampler = self._resampler
            if resampler is None or sig != self._audio_in:  # (None only before the first frame)
                if resampler is not None:
                    self._encode_audio(self._audio, resampler.resample(None))
                ctx = self._audio.codec_context
                resampler = self._resampler = av.AudioResampler(format=ctx.format.name, layout="stereo",
                                                                rate=AUDIO_RATE)
                self._audio_in = sig
            placed = None if t is None else round(max(0.0, t) * AUDIO_RATE)
            source_t = frame.time
            if self._audio_pts is None:
                self._audio_pts = placed or 0
            elif source_t is not None and self._audio_source_next is not None:
                jump = source_t - self._audio_source_next
                if 0.1 < jump < 5.0:
                    self._audio_pts += round(jump * AUDIO_RATE)
                elif (jump >= 5.0 or jump < -0.1) and placed is not None:
                    self._audio_pts = max(self._audio_pts, placed)
            self._audio_source_next = None if source_t is None else source_t + frame.samples / frame.sample_rate
            self._encode_audio(self._audio, resampler.resample(frame))

    def _encode_audio(self, stream: av.audio.stream.AudioStream, frames) -> None:
        for f in frames:
            f.pts, f.time_base = self._audio_pts, Fraction(1, AUDIO_RATE)
            self._audio_pts += f.samples
            self._out.mux(stream.encode(f))

    def write_audio_packet(self, packet: av.Packet) -> None:
        """Copy one demuxed packet of the ``copy_audio_from`` stream unchanged."""
        if packet.dts is None:   # demuxer flush marker
            return
        with self._lock:
            if self._closed:
                raise RuntimeError("writer is closed")
            if not self._copy_audio:
                raise RuntimeError("this writer was not made to copy audio packets")
            packet.stream = self._audio
            self._out.mux(packet)

    def close(self) -> None:
        """Flush the encoders and finish the file; safe to call twice."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self.frames:
                    self._out.mux(self._video.encode(None))
                if self._resampler is not None and self._audio is not None:  # a resampler implies audio
                    self._encode_audio(self._audio, self._resampler.resample(None))
                    self._out.mux(self._audio.encode(None))
            finally:
                self._out.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _fit(self, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
            raise ValueError(f"expected uint8 HxWx3/4, got {image.dtype} {image.shape}")
        h, w = image.shape[:2]
        if (h, w) == (self.height, self.width):
            return image
        if self.height <= h <= self.height + 1 and self.width <= w <= self.width + 1:
            return image[:self.height, :self.width]
        return cv2.resize(image, (self.width, self.height),
                          interpolation=cv2.INTER_AREA if w > self.width else cv2.INTER_LINEAR)


class AlphaWebmWriter(VideoWriter):
    """VP9 with an alpha channel (yuva420p) in WebM, plus Opus audio."""

    def __init__(self, path: Path | str, width: int, height: int, *, fps: float = 30.0,
                 audio: bool = True, crf: int = 32, realtime: bool = True, bitrate: str | None = None,
                 copy_audio_from: av.audio.stream.AudioStream | None = None):
        super().__init__(path, width, height, alpha=True, container="webm", fps=fps, audio=audio,
                         crf=crf, bitrate=bitrate, realtime=realtime, copy_audio_from=copy_audio_from)


class OpaqueVideoWriter(VideoWriter):
    """H.264 + AAC in MP4/MOV, or VP9 + Opus in WebM; the container comes from the suffix."""

    def __init__(self, path: Path | str, width: int, height: int, *, container: str | None = None,
                 fps: float = 30.0, audio: bool = True, crf: int | None = None, bitrate: str | None = None,
                 realtime: bool = True, copy_audio_from: av.audio.stream.AudioStream | None = None):
        super().__init__(path, width, height, alpha=False, container=container, fps=fps, audio=audio,
                         crf=crf, bitrate=bitrate, realtime=realtime, copy_audio_from=copy_audio_from)


def read_alpha_frames(path: Path | str) -> Iterator[np.ndarray]:
    """Decode the first video stream as RGBA uint8 frames, keeping VP8/VP9 alpha.

    FFmpeg's native VP9 decoder ignores the alpha side data in WebM, so VP8/VP9
    go through libvpx; other codecs (ProRes 4444, PNG...) use their own decoder.
    """
    with av.open(str(path)) as src:
        stream = src.streams.video[0]
        name = stream.codec_context.name
        if name in ("vp8", "vp9"):
            decoder = av.CodecContext.create("libvpx" if name == "vp8" else "libvpx-vp9", "r")
        else:
            decoder = stream.codec_context
        for packet in src.demux(stream):
            for frame in decoder.decode(None if packet.size == 0 else packet):
                yield frame.to_ndarray(format="rgba")


def has_audio(path: Path | str) -> bool:
    with av.open(str(path)) as src:
        return bool(src.streams.audio)
