"""Cut-outs of still images: RMBG, RVM run well on a single photo, or ``auto``.

RMBG-1.4 (here IS-Net general weights) is a salient-object model: it cuts out anything,
but on people it leaves coats, hats and hair half transparent. RVM is trained on
people and does four times better on them, but it finds nothing else. ``auto`` runs
RVM and keeps its matte when it finds a person; otherwise (objects, products, scenes
without people) it runs RMBG. Measured per photo in bench/README.md ("cut-out quality").
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from torch import nn

from matting.session import EMPTY_STATE, network_input, step

MODELS = ("auto", "rvm", "rmbg")
# RVM on a still photo: the network input's long side, and how many times the same
# frame goes through it. Video runs at 256-512 px to keep up; a photo can afford more,
# and 640 px was best of 384-768 on the photos tuned on (bench/README.md). The recurrent
# state starts at zeros, as after a scene cut; feeding the frame again lets it settle
# (MAD on the B/W coat photo: 12.5, 12.9, 9.8 after 1, 2, 3 passes).
STILL_SIDE = 640
STILL_PASSES = 3
# auto: a person is an opaque (alpha > 0.5) connected region covering at least this
# share of the photo; RVM's stray responses on scenes without people stay near 1 %.
PERSON_MIN_AREA = 0.02


@dataclass(frozen=True)
class StillMatte:
    """One photo's alpha (float32 HxW in [0, 1]) and the model that made it."""

    alpha: np.ndarray
    model: str


def still_ratio(height: int, width: int, side: int = STILL_SIDE) -> float:
    """RVM's downsample ratio that gives the network ``side`` px on the long side (at most 1)."""
    return min(1.0, side / max(height, width))


def rvm_still_alpha(model: nn.Module, rgb: np.ndarray, *, side: int = STILL_SIDE,
                    passes: int = STILL_PASSES) -> np.ndarray:
    """RVM alpha of one uint8 HxWx3 RGB photo: fresh state, ``passes`` passes of the same
    frame, the refiner bringing each to full resolution."""
    param = next(model.parameters())
    src = network_input(rgb, param.device, param.dtype)
    height, width = rgb.shape[:2]
    ratio = still_ratio(height, width, side)
    state = EMPTY_STATE
    for _ in range(passes):
        _, pha, state = step(model, src, state, ratio)
    return pha[0, 0].float().cpu().numpy()


def largest_region(alpha: np.ndarray) -> float:
    """Share of the image covered by the largest connected region where alpha > 0.5."""
    mask = (alpha > 0.5).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if count <= 1:
        return 0.0
    return float(stats[1:, cv2.CC_STAT_AREA].max()) / mask.size


def has_person(rvm_alpha: np.ndarray) -> bool:
    return largest_region(rvm_alpha) >= PERSON_MIN_AREA


def person_is_subject(rvm_alpha: np.ndarray, rmbg_alpha: np.ndarray) -> bool:
    """Whether the person RVM found is what RMBG cut out: RVM's region covers at least
    half of RMBG's. On the dev photos that share is 0.89-1.00 with a person (RMBG also
    keeps a table beside one); on a photo of an object RVM's stray region lies off the
    object (share 0.0), and RMBG's cut-out is the one to keep."""
    salient = rmbg_alpha > 0.5
    if not salient.any():
        return True
    return float((salient & (rvm_alpha > 0.5)).sum()) >= 0.5 * float(salient.sum())


def pick(person: np.ndarray, salient: np.ndarray) -> StillMatte:
    """``auto``'s choice between RVM's alpha (``person``) and RMBG's (``salient``)."""
    if has_person(person) and person_is_subject(person, salient):
        return StillMatte(person, "rvm")
    return StillMatte(salient, "rmbg")


def cut_out(rgb: np.ndarray, model: str, *, rvm: Callable[[], nn.Module],
            rmbg: Callable[[], nn.Module]) -> StillMatte:
    """Alpha of one uint8 RGB photo by ``model`` (``auto``, ``rvm`` or ``rmbg``); ``rvm``
    and ``rmbg`` return the loaded networks (called only when needed, so a server missing
    one checkpoint still serves the other model)."""
    from matting.cutout import cutout_alpha

    if model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, not {model!r}")
    if model == "rmbg":
        return StillMatte(cutout_alpha(rmbg(), rgb), "rmbg")
    person = rvm_still_alpha(rvm(), rgb)
    if model == "rvm":
        return StillMatte(person, "rvm")
    return pick(person, cutout_alpha(rmbg(), rgb))
