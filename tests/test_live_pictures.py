"""Matted pictures go to the encoders as yuv420p, converted by OpenCV to about the values
swscale (PyAV, the encoders' own conversion) gives."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import av
import numpy as np
import pytest

from matting.compositing import Background
from server.live.pictures import Picture
from server.live.pipeline import LivePipeline

CLIP = "temporal/p3m_00a7a27c_porch_512x288"


@pytest.fixture(scope="module")
def frames(media) -> list[av.VideoFrame]:
    with av.open(str(media / CLIP / "com.mkv")) as container:
        return [f for _, f in zip(range(3), container.decode(video=0), strict=False)]


def test_yuv420p_has_the_values_the_encoders_own_conversion_gives(frames):
    rgb = frames[0].to_ndarray(format="rgb24")
    picture = Picture.from_rgb(rgb)
    assert picture.format == "yuv420p" and picture.array.shape == (288 * 3 // 2, 512)
    ours = picture.frame()
    swscale = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p")
    luma = np.abs(ours.to_ndarray()[:288].astype(int) - swscale.to_ndarray()[:288].astype(int))
    assert luma.max() <= 1
    # chroma: OpenCV averages each 2x2 block, swscale filters; decoded back to RGB, each is
    # about as far from the source (2.13 against 1.91 levels on average on this clip)
    errors = [np.abs(f.to_ndarray(format="rgb24").astype(int) - rgb).mean() for f in (ours, swscale)]
    assert errors[0] <= errors[1] + 0.5, errors


def test_odd_sizes_stay_rgb_and_every_frame_is_a_copy():
    rgb = np.random.default_rng(0).integers(0, 256, (9, 14, 3), np.uint8)
    picture = Picture.from_rgb(rgb)
    assert picture.format == "rgb24"
    first, second = picture.frame(), picture.frame()
    assert first is not second
    assert np.array_equal(first.to_ndarray(format="rgb24"), rgb)
    again = Picture.of(first)
    assert again.format == "rgb24" and np.array_equal(again.array, rgb)


async def test_the_live_pipeline_hands_out_yuv420p(runtime, frames, tmp_path):
    executor = ThreadPoolExecutor(1)
    try:
        pipeline = LivePipeline(runtime, executor, Background("color", color=(0, 177, 64)),
                                recordings_dir=tmp_path, name="pictures", downsample_ratio=0.5)
        out = await pipeline.process(frames[0])
    finally:
        executor.shutdown()
    assert (out.format.name, out.width, out.height, out.pts) == ("yuv420p", 512, 288, frames[0].pts)
    # the green background shows: the composite made it through the conversion
    rgb = out.to_ndarray(format="rgb24").reshape(-1, 3).astype(int)
    assert (np.abs(rgb - (0, 177, 64)).max(axis=1) < 12).mean() > 0.2
