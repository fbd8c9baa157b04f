"""Compositing numerics: exact at alpha 0 and 1, linear in between, and real-photo checks."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import load_alpha, load_rgb
from matting.compositing import (
    NAMED_COLORS,
    Background,
    blur,
    checkerboard,
    composite,
    cover_resize,
    over_checkerboard,
    parse_background,
    to_rgba,
)
from matting.result import MatteResult

H, W = 48, 64


def _matte(alpha_value: float, fg=(0.2, 0.6, 1.0)) -> MatteResult:
    return MatteResult(alpha=np.full((H, W), alpha_value, np.float32),
                       foreground=np.broadcast_to(np.array(fg, np.float32), (H, W, 3)).copy())


@pytest.fixture
def frame():
    return np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)


@pytest.mark.parametrize("spec, kind, color", [
    ("transparent", "transparent", None), ("green", "color", NAMED_COLORS["green"]),
    (" White ", "color", (255, 255, 255)), ("#1a2B3c", "color", (0x1A, 0x2B, 0x3C)),
    ("ff8000", "color", (255, 128, 0)), ("blur", "blur", None), ("blur:7", "blur", None),
])
def test_parse_background(spec, kind, color):
    bg = parse_background(spec)
    assert bg.kind == kind
    if color:
        assert bg.color == color
    if spec == "blur:7":
        assert bg.blur_radius == 7


@pytest.mark.parametrize("spec", ["purple", "#12345", "blur:0", "blur:x", "image:", "", "rgb(1,2,3)"])
def test_parse_background_rejects_with_valid_options(spec):
    with pytest.raises(ValueError) as err:
        parse_background(spec)
    assert "blur" in str(err.value)


def test_parse_image_background(media, tmp_path):
    bg = parse_background(f"image:{media / 'backgrounds' / 'building.jpg'}")
    assert bg.kind == "image" and bg.image.shape == (600, 868, 3)
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="background image .*not an image"):
        parse_background(f"image:{tmp_path / 'x.png'}")


def test_transparent_gives_straight_rgba(frame):
    m = _matte(0.25)
    out = composite(frame, m, Background("transparent"))
    assert out.dtype == np.uint8 and out.shape == (H, W, 4)
    assert (out[..., :3] == (51, 153, 255)).all() and (out[..., 3] == 64).all()


@pytest.mark.parametrize("bg", [Background("color", color=(10, 200, 30)), Background("blur", blur_radius=5)])
def test_alpha_one_keeps_foreground_alpha_zero_keeps_background(frame, bg):
    fg = np.random.default_rng(2).random((H, W, 3), dtype=np.float32)
    one = composite(frame, MatteResult(np.ones((H, W), np.float32), fg), bg)
    assert np.array_equal(one, np.round(fg * 255).astype(np.uint8))
    zero = composite(frame, MatteResult(np.zeros((H, W), np.float32), fg), bg)
    assert np.array_equal(zero, np.ascontiguousarray(bg.plate(frame)))


def test_half_alpha_is_the_mean(frame):
    out = composite(frame, _matte(0.5, fg=(1.0, 0.0, 0.5)), Background("color", color=(0, 100, 255)))
    expected = np.array([127.5, 50.0, 255 * 0.5 + 127.5 * 0.5])
    assert np.abs(out.astype(float) - expected).max() <= 1.0


def test_image_background_cover_fitted(frame):
    img = np.zeros((100, 400, 3), np.uint8)
    img[:, 150:250] = 255   # a white band in the middle third
    bg = Background("image", image=img)
    out = composite(frame, _matte(0.0), bg)
    assert out.shape == (H, W, 3)
    # 400x100 covering 64x48 scales to 192x48, keeping the middle 64 columns: all but the band's edges white
    assert out[:, 8:-8].min() == 255
    assert bg.plate(frame) is bg.plate(frame)  # fitted once per size


def test_cover_resize_keeps_aspect():
    img = np.zeros((200, 100, 3), np.uint8)
    img[:50] = 255  # top quarter white
    out = cover_resize(img, 100, 100)  # 100x200 portrait into a square: the top and bottom quarters go
    assert out.shape == (100, 100, 3) and out.max() == 0
    wide = cover_resize(img[:100], 40, 20)  # 100x100 (white top half) into 20 wide x 40 high: scale 0.4
    assert wide.shape == (40, 20, 3) and wide[:18].min() == 255 and wide[22:].max() == 0


def test_blur_smooths_but_keeps_mean(media):
    rgb = load_rgb(media / "backgrounds" / "building.jpg")
    out = blur(rgb, 15)
    assert out.shape == rgb.shape
    assert abs(out.mean() - rgb.mean()) < 2
    assert _gradient(out) < _gradient(rgb) / 5


def _gradient(img: np.ndarray) -> float:
    return float(np.abs(np.diff(img.astype(np.float32), axis=1)).mean())


def test_real_foreground_over_green(media):
    """Recompose the dev-set photo from its own foreground and GT alpha over green; check the mix."""
    rgba = np.asarray(Image.open(media / "foregrounds" / "p3m_0a78cf02.png"))
    alpha = load_alpha(media / "alpha" / "p3m_0a78cf02.png")
    fg = rgba[..., :3].astype(np.float32) / 255
    out = composite(rgba[..., :3], MatteResult(alpha, fg), parse_background("green"))
    green = np.array(NAMED_COLORS["green"], np.float32)
    expected = fg * 255 * alpha[..., None] + green * (1 - alpha[..., None])
    err = np.abs(out - expected)
    print(f"composite vs float reference: max {err.max():.3f}, mean {err.mean():.4f}")
    assert err.max() <= 1.0
    assert (out[alpha == 0] == green).all()


def test_to_rgba_and_checkerboard():
    board = checkerboard(4, 6, cell=2)
    assert board.shape == (4, 6, 3) and board[0, 0, 0] == 255 and board[0, 2, 0] == 204 and board[2, 0, 0] == 204
    rgba = to_rgba(np.zeros((4, 6, 3), np.float32), np.array([[0, 1, 0.5, 0.5, 1, 0]] * 4, np.float32))
    assert rgba[0, :, 3].tolist() == [0, 255, 128, 128, 255, 0]
    shown = over_checkerboard(rgba, cell=2)
    assert shown[0, 0].tolist() == [255] * 3 and shown[0, 1].tolist() == [0] * 3
    assert abs(int(shown[0, 2, 0]) - 102) <= 1  # half black over the 204 grey


def test_shape_mismatch_is_an_error(frame):
    with pytest.raises(ValueError, match="does not fit"):
        composite(frame[:10], _matte(1.0), parse_background("green"))
