"""Load an RVM MobileNetV3 checkpoint strictly, with errors that say what to do."""
from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from matting.rvm.network import REFINERS, MattingNetwork
from matting.rvm.refiners import FastGuidedFilterRefiner
from matting.weights import CheckpointError, layout_problems, missing_message

log = logging.getLogger(__name__)

REFINER_CHOICES = ("auto", *REFINERS)


def load_rvm(path: str | Path, *, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32, refiner: str = "auto") -> MattingNetwork:
    """The network in eval mode on ``device``/``dtype``.

    ``refiner``: ``deep_guided_filter``, ``fast_guided_filter``, or ``auto``: the deep
    guided filter unless the checkpoint's is untrained (see :func:`refiner_is_trained`).
    """
    if refiner not in REFINER_CHOICES:
        raise ValueError(f"refiner must be one of {REFINER_CHOICES}, not {refiner!r}")
    path = Path(path)
    state = read_state_dict(path)
    model = MattingNetwork("deep_guided_filter")
    check_layout(path, state, model.state_dict())
    model.load_state_dict(state, strict=True)
    if refiner == "auto":
        trained = refiner_is_trained(state)
        refiner = "deep_guided_filter" if trained else "fast_guided_filter"
        why = "checkpoint has a trained refiner" if trained else \
            "checkpoint's deep guided filter is untrained (it would be plain bilinear upsampling)"
        log.info("RVM refiner: %s (auto: %s)", refiner, why)
    else:
        log.info("RVM refiner: %s (as configured)", refiner)
    if refiner == "fast_guided_filter":
        model.refiner = FastGuidedFilterRefiner()
    return model.to(device=device, dtype=dtype).eval()


def refiner_is_trained(state: Mapping[str, torch.Tensor]) -> bool:
    """False when the deep guided filter's last conv weights are all zero: then its A is
    a constant and the refiner cannot follow image edges (re-exports without DGF weights
    ship it that way, making it plain bilinear upsampling)."""
    return bool(state["refiner.conv.6.weight"].any())


def read_state_dict(path: Path) -> Mapping[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"RVM checkpoint {path} does not exist. " + missing_message("rvm"))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # torch.load raises many types for damaged files (zip, pickle, EOF, unicode errors).
    except Exception as exc:
        if isinstance(exc, pickle.UnpicklingError):
            reason = "not a plain-tensor PyTorch file"  # torch's own text suggests unsafe loading
        else:
            reason = (str(exc).strip() or type(exc).__name__).split(". ")[0]
        raise CheckpointError(
            f"RVM checkpoint {path} cannot be read ({reason}): the file is truncated, corrupt "
            "or not a PyTorch checkpoint. Delete it and get a good copy. " + missing_message("rvm")
        ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(
            f"RVM checkpoint {path} holds a {type(state).__name__}, not a state dict of tensors. "
            + missing_message("rvm"))
    return state


def check_layout(path: Path, state: Mapping[str, torch.Tensor],
                 expected: Mapping[str, torch.Tensor]) -> None:
    """Raise CheckpointError naming missing/unexpected keys and wrong shapes (first few)."""
    problems = layout_problems(state, expected)
    if problems:
        raise CheckpointError(
            f"{path} is not an RVM MobileNetV3 checkpoint ({'; '.join(problems)}). "
            + missing_message("rvm"))
