"""Still-image cut-outs: RVM on a single photo, ``auto`` against RMBG, on the dev photos
with ground truth and on an object photo without a person."""
from __future__ import annotations

import io
import json
from fractions import Fraction

import numpy as np
from PIL import Image

from conftest import load_alpha, load_rgb
from matting.metrics import mad
from matting.still import has_person, person_is_subject, pick
from still_support import object_photo

# MAD (x1e3) limits for RVM on a still (640 px, 3 passes) per dev photo: measured on CPU
# fp32 + 20 % + 2, as for RMBG (tests/test_rmbg.py, where RMBG scores 2.1-136 on these).
# Measured: architecture 1.91, porch (00a7a27c) 3.26, building 4.45, porch (0a78cf02)
# 6.71, p3m_00a7a27c 9.84, p3m_0a78cf02 2.55. The size and passes were chosen on the
# 00a7a27c photos; the three 0a78cf02 photos were held out.
RVM_LIMITS = {
    "comp_p3m_00a7a27c_architecture": 4.5,
    "comp_p3m_00a7a27c_porch": 6.0,
    "comp_p3m_0a78cf02_building": 7.5,
    "comp_p3m_0a78cf02_porch": 10.5,
    "p3m_00a7a27c": 14.0,
    "p3m_0a78cf02": 5.0,
}


def test_rvm_on_a_still_and_auto_on_every_dev_photo(dev_alphas, media, artifacts):
    table = {}
    for stem, alphas in sorted(dev_alphas.items()):
        truth = load_alpha(media / "alpha" / f"{stem}.png")
        auto = pick(alphas["rvm"], alphas["rmbg"])
        table[stem] = {"rmbg": mad(alphas["rmbg"], truth), "rvm": mad(alphas["rvm"], truth),
                       "auto": mad(auto.alpha, truth), "auto_model": auto.model}
        print(f"{stem}: MAD rmbg {table[stem]['rmbg']:.2f} rvm {table[stem]['rvm']:.2f} "
              f"auto {table[stem]['auto']:.2f} ({auto.model})")
    (artifacts / "still_quality.json").write_text(json.dumps(table, indent=2))
    assert set(table) == set(RVM_LIMITS), "new dev photo: measure it and add a limit"
    for stem, row in table.items():
        assert row["rvm"] <= RVM_LIMITS[stem], (stem, row)
        assert row["auto_model"] == "rvm", (stem, row)  # every dev photo shows a person
    # The goal: mean MAD on people at most 10 (RMBG alone: 54)
    assert np.mean([row["auto"] for row in table.values()]) <= 10
    # The architecture composite stays as good as RMBG makes it (RMBG 2.08, RVM 1.91).
    arch = table["comp_p3m_00a7a27c_architecture"]
    assert arch["auto"] <= arch["rmbg"] + 0.5


def test_auto_keeps_an_object_rvm_would_lose(runtime, media):
    rgb, truth = object_photo(media)
    auto = runtime.still_matte(rgb, "auto")
    rvm = runtime.still_matte(rgb, "rvm").alpha
    print(f"object photo: auto ({auto.model}) MAD {mad(auto.alpha, truth):.2f}, RVM alone {mad(rvm, truth):.1f}")
    assert auto.model == "rmbg"
    assert mad(auto.alpha, truth) < 4.0  # measured 1.47
    assert mad(rvm, truth) > 100         # what auto protects against: RVM finds no person here
    # RVM's stray response here is big enough to pass for a small person; it is the
    # comparison with RMBG's subject that rules it out.
    assert has_person(rvm) and not person_is_subject(rvm, auto.alpha)


async def test_snapshots_use_auto(runtime, media, tmp_path):
    """A live snapshot of a person RMBG loses (MAD 136 on this photo) is RVM's cut-out."""
    from concurrent.futures import ThreadPoolExecutor

    import av
    import cv2

    from matting.compositing import Background
    from server.live.pipeline import LivePipeline

    name, size = "comp_p3m_0a78cf02_porch", (320, 480)
    rgb = cv2.resize(load_rgb(media / "images" / f"{name}.jpg"), size, interpolation=cv2.INTER_AREA)
    truth = cv2.resize(load_alpha(media / "alpha" / f"{name}.png"), size, interpolation=cv2.INTER_AREA)
    with ThreadPoolExecutor(1) as pool:
        pipeline = LivePipeline(runtime, pool, Background(), recordings_dir=tmp_path, name="still")
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = 0, Fraction(1, 30)
        await pipeline.process(frame)
        png = await pipeline.snapshot()
        await pipeline.close()
    with Image.open(io.BytesIO(png)) as im:
        alpha = np.asarray(im.getchannel("A"), np.float32) / 255
    score = mad(alpha, truth)
    print(f"snapshot of {name}: MAD {score:.1f}")
    assert score < 25  # RVM ~7 here, RMBG ~136
