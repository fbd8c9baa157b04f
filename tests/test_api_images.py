"""POST /remove-bg on the real app (127.0.0.1, real RMBG weights, a real photo with ground truth)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from api_support import api_client, form
from conftest import load_alpha, load_rgb
from matting.metrics import mad

pytestmark = pytest.mark.timeout(240)

NAME = "p3m_0a78cf02"
GREEN = np.array([0, 177, 64], np.float32)


async def test_remove_bg_round_trip_matches_core(runtime, media, tmp_path):
    rgb = load_rgb(media / "images" / f"{NAME}.png")
    truth = load_alpha(media / "alpha" / f"{NAME}.png")
    upload = (media / "images" / f"{NAME}.png").read_bytes()

    async with api_client(runtime, tmp_path / "data") as client:
        # RMBG with the photo's own colours: what runtime.cutout gives (auto and the
        # estimated colours are checked in test_api_image_options)
        core = {"model": "rmbg", "foreground": "original"}
        resp = await client.post("/remove-bg", params=core,
                                 data=form(upload, "portrait.png", content_type="image/png"))
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "image/png"
        assert "portrait-transparent.png" in resp.headers["Content-Disposition"]
        cut = Image.open(io.BytesIO(await resp.read()))
        assert cut.mode == "RGBA" and cut.size == (rgb.shape[1], rgb.shape[0])
        rgba = np.asarray(cut)

        resp = await client.post("/remove-bg", params={**core, "background_type": "green", "format": "jpeg"},
                                 data=form(upload, "portrait.png"))
        assert resp.status == 200, await resp.text()
        assert resp.content_type == "image/jpeg"
        on_green = np.asarray(Image.open(io.BytesIO(await resp.read())).convert("RGB"), np.float32)

        metrics = await (await client.get("/metrics")).text()

    served_alpha = rgba[:, :, 3].astype(np.float32) / 255.0
    core_alpha = runtime.cutout(rgb)
    mad_served, mad_core = mad(served_alpha, truth), mad(core_alpha, truth)
    print(f"\n/remove-bg MAD vs ground truth: served {mad_served:.2f}, core {mad_core:.2f} (x1e-3); "
          f"served vs core {mad(served_alpha, core_alpha):.3f}")
    # The API adds only 8-bit quantisation to the core's alpha.
    assert abs(mad_served - mad_core) < 0.5
    assert mad(served_alpha, core_alpha) < 2.5
    # The colour channels are the untouched photo (the alpha does the cutting).
    assert np.array_equal(rgba[:, :, :3], rgb)

    # The composite is photo*alpha + green*(1-alpha), up to JPEG noise.
    a = served_alpha[:, :, None]
    expected = rgb.astype(np.float32) * a + GREEN * (1 - a)
    err = np.abs(on_green - expected).mean()
    background = (truth < 0.01) & (served_alpha < 0.01)
    print(f"green composite: mean abs error {err:.2f} levels; background pixels {background.mean():.1%}")
    assert err < 3.0
    assert np.abs(on_green[background] - GREEN).mean() < 4.0

    assert 'abrar_upload_inference_seconds_count{kind="image"} 2.0' in metrics
