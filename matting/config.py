"""Runtime settings for the matting core (kept free of torch so CLIs start fast)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    precision: str = "auto"       # auto | fp32 | fp16
    rvm_weights: Path | None = None
    rmbg_weights: Path | None = None
    # auto: the checkpoint's deep guided filter, or the fast guided filter when the
    # checkpoint's refiner is untrained (as in re-exported weights)
    refiner: str = "auto"         # auto | deep_guided_filter | fast_guided_filter
    threads: int | None = None    # torch intra-op threads on the CPU; None = torch default
    download: bool = True         # allow fetching missing weights
