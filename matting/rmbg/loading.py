"""Load an RMBG-1.4 checkpoint (safetensors or torch ``.pth`` state dict) strictly."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from matting.rmbg.isnet import BriaRMBG
from matting.weights import MODELS, CheckpointError, layout_problems, missing_message

# torch.save writes a zip archive; anything else is read as safetensors.
_ZIP_MAGIC = b"PK\x03\x04"


def _replace_hint(path: Path) -> str:
    spec = MODELS["rmbg"]
    return f"Replace {path} with an intact copy of the official {spec.filename} ({spec.url})."


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    with open(path, "rb") as f:
        magic = f.read(4)
    try:
        if magic == _ZIP_MAGIC:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            state = load_file(path, device="cpu")
    except (SafetensorError, RuntimeError, OSError, ValueError, EOFError) as exc:
        kind = "torch state dict" if magic == _ZIP_MAGIC else "safetensors file"
        raise CheckpointError(
            f"RMBG checkpoint {path} is not a readable {kind} ({exc}); it is truncated or "
            f"corrupt. {_replace_hint(path)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"RMBG checkpoint {path} does not hold a plain state dict of tensors. "
                              + _replace_hint(path))
    return state


def _check_layout(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    problems = layout_problems(state, expected)
    if problems:
        raise CheckpointError(f"RMBG checkpoint {path} does not match the RMBG-1.4 (BriaRMBG) layout: "
                              + "; ".join(problems) + ". It is another model or a damaged file. "
                              + _replace_hint(path))


def load_rmbg(path: str | Path, *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> BriaRMBG:
    """The RMBG-1.4 network with ``path``'s weights, in eval mode on ``device``/``dtype``.

    Raises :class:`CheckpointError` when the file is missing, unreadable or of another layout.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"RMBG checkpoint {path} does not exist. " + missing_message("rmbg"))
    state = _read_state_dict(path)
    model = BriaRMBG()
    _check_layout(path, state, model.state_dict())
    # Casts on copy: the file's fp16 convs and fp32 BNs land in the module's dtype.
    model.to(device=device, dtype=dtype)
    model.load_state_dict(state, strict=True)
    return model.eval().requires_grad_(False)
