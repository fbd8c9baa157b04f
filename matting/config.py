"""Runtime settings for the matting core (kept free of torch so CLIs start fast)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"          # auto | cpu | cuda | cuda:N
    # int8: CPU only, in ONNX Runtime (matting.quantize); auto: see matting.runtime.onnx_precision
    precision: str = "auto"       # auto | fp32 | fp16 | int8
    rvm_weights: Path | None = None
    rmbg_weights: Path | None = None
    models_dir: Path | None = None  # searched first for both; None: ABRAR_MODELS_DIR, then ./models, the cache
    # auto: the checkpoint's deep guided filter, or the fast guided filter when the
    # checkpoint's refiner is untrained (as in re-exported weights)
    refiner: str = "auto"         # auto | deep_guided_filter | fast_guided_filter
    threads: int | None = None    # intra-op threads on the CPU (torch and ONNX Runtime); None = cores
    # threads of the child processes doing heavy work (RMBG cut-outs and video files for
    # a server), so that they leave live frames a core; None = cores - 1 (at least 1)
    heavy_threads: int | None = None
    # RVM and RMBG in torch, or in ONNX Runtime (CPU fp32 only; faster there),
    # or auto: onnxruntime on a CPU when the onnx and onnxruntime packages are installed
    backend: str = "torch"        # torch | onnxruntime | auto
    # Cross-session batching (matting.batching): frames of up to batch_max streams of one
    # size run as one forward pass, waiting at most batch_window_ms; 1 = off, 0 = auto
    # (16 on a GPU, where it doubles the streams a card sustains; off on a CPU, where it gains nothing)
    batch_max: int = 0
    batch_window_ms: float = 5.0
    # Replay RVM from CUDA graphs on a CUDA device (matting.cuda_graphs); no effect on a CPU
    cuda_graphs: bool = True
    download: bool = True         # allow fetching missing weights
