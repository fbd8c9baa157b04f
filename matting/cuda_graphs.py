"""RVM replayed from CUDA graphs: one graph per (input shape, downsample ratio).

At the sizes RVM runs at (a 512 px network input), a GPU finishes each of the network's
few hundred kernels faster than Python can launch them, so eager PyTorch leaves the card
mostly idle. A captured graph launches them all at once. The wrapper is a drop-in for the
network: same ``forward`` signature, same results (the graph runs the same kernels), and
a None state is fed as zeros, which is what the network does with None.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from matting.rvm.network import MattingNetwork

log = logging.getLogger(__name__)

# (src shape, dtype, downsample ratio)
GraphKey = tuple[tuple[int, ...], torch.dtype, float]


@dataclass
class _Captured:
    graph: torch.cuda.CUDAGraph
    src: Tensor
    state: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]


class CudaGraphMattingNetwork(nn.Module):
    """Wraps a CUDA :class:`matting.rvm.MattingNetwork`; ``forward`` returns fresh tensors
    (not the graph's buffers), so results may be kept across calls and threads.

    ``max_graphs``: shapes beyond this many run eagerly (each graph holds its own
    activations). Thread-safe: replays are serialised, as they share input buffers.
    """

    def __init__(self, model: MattingNetwork, *, max_graphs: int = 48, warmup_steps: int = 2):
        super().__init__()
        device = next(model.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA model, not one on {device}")
        self.model = model
        self.max_graphs = max_graphs
        self.warmup_steps = warmup_steps
        self._graphs: dict[GraphKey, _Captured] = {}
        self._failed: set[GraphKey] = set()
        self._pool: torch.cuda._POOL_HANDLE | None = None  # made with the first graph
        self._lock = threading.Lock()

    @property
    def refiner_name(self) -> str:
        return self.model.refiner_name

    @property
    def graph_count(self) -> int:
        return len(self._graphs)

    def forward(self, src: Tensor, r1: Tensor | None = None, r2: Tensor | None = None,
                r3: Tensor | None = None, r4: Tensor | None = None,
                downsample_ratio: float = 1.0) -> tuple[Tensor, ...]:
        state = (r1, r2, r3, r4)
        key = (tuple(src.shape), src.dtype, float(downsample_ratio))
        # the graph's buffers are inference tensors: only inference mode may write them
        with self._lock, torch.inference_mode():
            captured = self._graphs.get(key)
            if captured is None and key not in self._failed and len(self._graphs) < self.max_graphs:
                captured = self._capture(key, src, state, downsample_ratio)
            if captured is None:
                return self.model(src, *state, downsample_ratio=downsample_ratio)
            captured.src.copy_(src)
            for buffer, value in zip(captured.state, state, strict=False):
                if value is None:
                    buffer.zero_()
                else:
                    buffer.copy_(value)
            captured.graph.replay()
            return tuple(t.clone() for t in captured.outputs)

    def _capture(self, key: GraphKey, src: Tensor, state, ratio: float) -> _Captured | None:
        try:
            static_src = src.clone()
            side = torch.cuda.Stream(src.device)
            side.wait_stream(torch.cuda.current_stream(src.device))
            with torch.cuda.stream(side):
                # eager runs first: they give the state's shapes and let cuDNN pick its
                # algorithms outside the capture
                outputs = self.model(static_src, *state, downsample_ratio=ratio)
                static_state = tuple(torch.zeros_like(t) for t in outputs[2:])
                for _ in range(self.warmup_steps):
                    self.model(static_src, *static_state, downsample_ratio=ratio)
            torch.cuda.current_stream(src.device).wait_stream(side)
            if self._pool is None:
                self._pool = torch.cuda.graph_pool_handle()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self._pool):
                static_outputs = self.model(static_src, *static_state, downsample_ratio=ratio)
        except RuntimeError as exc:  # a shape or op that cannot be captured: run it eagerly
            log.warning("CUDA graph capture failed for %s, running it eagerly: %s", key, exc)
            self._failed.add(key)
            return None
        captured = _Captured(graph, static_src, static_state, tuple(static_outputs))
        self._graphs[key] = captured
        log.info("captured an RVM CUDA graph for input %s at ratio %s (%d graphs)",
                 list(key[0]), ratio, len(self._graphs))
        return captured
