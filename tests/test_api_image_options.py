"""POST /remove-bg options, each as a query parameter and as a form field (real app on
127.0.0.1, real weights, a real photo with ground truth scaled down to keep it quick)."""
from __future__ import annotations

import io

import aiohttp
import cv2
import numpy as np
import pytest
from PIL import Image

from api_support import api_client
from conftest import load_alpha, load_rgb
from matting.cutout_options import subject_box
from matting.metrics import mad

pytestmark = pytest.mark.timeout(300)

NAME = "comp_p3m_0a78cf02_porch"  # RMBG loses most of this person (MAD 136); RVM does not
SIZE = (240, 360)                 # (w, h): RVM at full size, no refiner; seconds per request
RED = (220, 30, 30)


@pytest.fixture(scope="module")
def photo(media):
    rgb = cv2.resize(load_rgb(media / "images" / f"{NAME}.jpg"), SIZE, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(load_alpha(media / "alpha" / f"{NAME}.png"), SIZE, interpolation=cv2.INTER_AREA)
    return rgb, truth, _png(rgb)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()


def _request(upload: bytes, options: dict[str, str], as_form: bool, background: bytes | None = None):
    """(form data, query params) sending ``options`` one way or the other."""
    data = aiohttp.FormData()
    data.add_field("file", upload, filename="photo.png", content_type="image/png")
    if background is not None:
        data.add_field("background_file", background, filename="bg.png", content_type="image/png")
    if as_form:
        for name, value in options.items():
            data.add_field(name, value)
        return data, {}
    return data, options


async def _cut(client, upload, options, as_form, background=None, status=200):
    data, query = _request(upload, options, as_form, background)
    resp = await client.post("/remove-bg", data=data, params=query)
    body = await resp.read()
    assert resp.status == status, body[:300]
    return resp, body


def _image(body: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(body)) as im:
        return np.asarray(im)


@pytest.mark.parametrize("as_form", [False, True], ids=["query", "form"])
async def test_each_option(runtime, photo, tmp_path, as_form):
    rgb, truth, upload = photo
    h, w = rgb.shape[:2]
    async with api_client(runtime, tmp_path / "data") as client:
        # model: rvm and rmbg (auto is the default, checked last)
        resp, body = await _cut(client, upload, {"model": "rvm"}, as_form)
        assert resp.headers["X-Model"] == "rvm" and resp.content_type == "image/png"
        rgba = _image(body)
        assert rgba.shape == (h, w, 4)
        rvm_mad = mad(rgba[:, :, 3] / np.float32(255), truth)
        resp, body = await _cut(client, upload, {"model": "rmbg"}, as_form)
        rmbg_mad = mad(_image(body)[:, :, 3] / np.float32(255), truth)
        print(f"\n{NAME} at {w}x{h}: MAD rvm {rvm_mad:.1f}, rmbg {rmbg_mad:.1f}")
        assert resp.headers["X-Model"] == "rmbg" and rvm_mad < 25 < rmbg_mad

        # format=mask is the alpha of the PNG, as a grey image
        resp, body = await _cut(client, upload, {"model": "rvm", "format": "mask"}, as_form)
        mask = _image(body)
        assert resp.content_type == "image/png" and mask.shape == (h, w)
        assert np.array_equal(mask, rgba[:, :, 3])

        # format=webp keeps the alpha (lossy colours)
        resp, body = await _cut(client, upload, {"model": "rvm", "format": "webp"}, as_form)
        webp = _image(body)
        assert resp.content_type == "image/webp" and webp.shape == (h, w, 4)
        assert np.abs(webp[:, :, 3].astype(int) - rgba[:, :, 3]).mean() < 3

        # format=jpeg without a background: on white (a JPEG cannot be transparent)
        resp, body = await _cut(client, upload, {"model": "rvm", "format": "jpeg"}, as_form)
        on_white = _image(body).astype(np.float32)
        assert resp.content_type == "image/jpeg" and on_white.shape == (h, w, 3)
        assert np.abs(on_white[(truth < 0.01) & (mask == 0)] - 255).mean() < 6

        # foreground=original: the photo's own pixels; estimated (default) changes the edges only
        resp, body = await _cut(client, upload, {"model": "rvm", "foreground": "original"}, as_form)
        original = _image(body)
        assert np.array_equal(original[:, :, :3], rgb)
        edge = (mask > 0) & (mask < 255)
        assert np.array_equal(rgba[mask == 255][:, :3], rgb[mask == 255])
        assert np.abs(rgba[:, :, :3].astype(int) - rgb)[edge].mean() > 1

        # crop + crop_margin: the subject's box plus the margin, the same pixels as uncropped
        resp, body = await _cut(client, upload, {"model": "rvm", "crop": "true", "crop_margin": "6"}, as_form)
        cropped = _image(body)
        top, bottom, left, right = subject_box(mask / np.float32(255), 6)
        assert cropped.shape == (bottom - top, right - left, 4) and cropped.shape[0] * cropped.shape[1] < h * w
        assert np.array_equal(cropped, rgba[top:bottom, left:right])
        ys, xs = np.nonzero(truth > 0.5)
        assert top <= ys.min() and ys.max() < bottom and left <= xs.min() and xs.max() < right

        # max_size: the longest side
        resp, body = await _cut(client, upload, {"model": "rvm", "max_size": "120"}, as_form)
        assert _image(body).shape == (120, 80, 4)

        # background_file: an uploaded image behind the subject (auto, the default model)
        plate = np.zeros((50, 70, 3), np.uint8)
        plate[:] = RED
        resp, body = await _cut(client, upload, {"format": "png"}, as_form, background=_png(plate))
        on_red = _image(body).astype(np.float32)
        assert resp.headers["X-Model"] == "rvm" and on_red.shape == (h, w, 3)
        assert np.abs(on_red[(truth < 0.01) & (mask == 0)] - RED).mean() < 4

        # unknown names are refused, and the message says where options go
        resp, body = await _cut(client, upload, {"modle": "rvm"}, as_form, status=400)
        message = (await resp.json())["error"]["message"]
        assert "modle" in message and "query parameter" in message and "form field" in message


async def test_same_option_twice_and_bad_background_file(runtime, photo, tmp_path):
    _, _, upload = photo
    async with api_client(runtime, tmp_path / "data") as client:
        data, _ = _request(upload, {"model": "rvm"}, as_form=True)
        resp = await client.post("/remove-bg", data=data, params={"model": "rmbg"})
        assert resp.status == 400 and "both" in (await resp.json())["error"]["message"]
        resp, _ = await _cut(client, upload, {"model": "rvm"}, True, background=b"not an image", status=415)
        assert "background_file" in (await resp.json())["error"]["message"]
        resp, _ = await _cut(client, upload, {"background_type": "green"}, False, background=upload, status=400)
        assert "not both" in (await resp.json())["error"]["message"]


async def test_video_options_as_form_fields(runtime, tmp_path):
    """remove-bg-video reads its options from form fields too (no model runs here)."""
    async with api_client(runtime, tmp_path / "data") as client:
        async def post(**fields):
            data = aiohttp.FormData()
            data.add_field("file", b"not a video at all", filename="clip.mp4", content_type="video/mp4")
            for name, value in fields.items():
                data.add_field(name, value)
            resp = await client.post("/remove-bg-video", data=data)
            return resp.status, (await resp.json())["error"]["message"]

        status, message = await post(crf="abc")
        assert status == 400 and "crf" in message
        status, message = await post(bogus="1")
        assert status == 400 and "bogus" in message and "query parameters" in message
        status, message = await post(keep_audio="false", background_type="green")  # accepted; then no video
        assert status == 415, message
    assert not list((tmp_path / "data" / "uploads").iterdir())
