"""What a matting step returns."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatteResult:
    """One frame's matte.

    ``alpha``: float32 HxW in [0, 1] (1 = person).
    ``foreground``: float32 HxWx3 RGB in [0, 1], the predicted foreground colours
    (already de-spilled by the network; use it for compositing, not the raw frame).
    """

    alpha: np.ndarray
    foreground: np.ndarray
