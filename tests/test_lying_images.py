"""Tiny images whose headers declare huge sizes: refused (400) before any decoding or
matting, while real, highly compressible large images still load."""
from __future__ import annotations

import io
import resource

import numpy as np
import pytest
from PIL import Image

from api_support import api_client, form
from hostile_media import lying_jpeg, lying_png
from matting.images import ImageInputError, load_image

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("make", [lying_jpeg, lying_png], ids=["jpeg", "png"])
def test_a_tiny_file_declaring_6000x6000_is_refused_before_decoding(make):
    data = make(6000, 6000)
    assert len(data) < 1000
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ImageInputError, match="truncated or corrupt.*6000x6000"):
        load_image(data, max_pixels=40_000_000)
    # nothing near the 108 MB a 6000x6000 RGB buffer needs was allocated
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before < 50 * 1024


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_flat_images_still_load(fmt):
    """A real 4000x3000 single-colour image compresses far, yet stays above the floor."""
    buf = io.BytesIO()
    Image.new("RGB", (4000, 3000), (120, 130, 140)).save(buf, fmt, optimize=True)
    rgb = load_image(buf.getvalue())
    assert rgb.shape == (3000, 4000, 3) and np.all(rgb[1500, 2000] == rgb[0, 0])


async def test_remove_bg_answers_400_before_the_model_runs(runtime, tmp_path):
    async with api_client(runtime, tmp_path / "data") as client:
        for name, data, mime in (("a.jpg", lying_jpeg(6000, 6000), "image/jpeg"),
                                 ("a.png", lying_png(6000, 6000), "image/png")):
            resp = await client.post("/remove-bg", data=form(data, name, content_type=mime))
            assert resp.status == 400, await resp.text()
            assert "truncated or corrupt" in (await resp.json())["error"]["message"]
