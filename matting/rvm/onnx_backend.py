"""RVM in ONNX Runtime: on a CPU faster than eager PyTorch for the same float32 results,
and far steadier when other processes compete for the cores (see bench/README.md).

The network is exported with the frame size, batch size and network input size as
dynamic dimensions, and the downsampled frame as an input (computed by PyTorch), so one
graph serves every size and downsample ratio. Two graphs, each exported on first use:
``refined`` (encoder, decoder and the refiner, for ratios below 1) and ``plain`` (ratio 1,
no refiner). Exporting takes a second or two.
"""
from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor, nn

from matting.onnx_runtime import OPSET, ort_session, to_onnx
from matting.rvm.network import MattingNetwork, downsample

STATE_NAMES = ("r1", "r2", "r3", "r4")
# GRU channels and stride (relative to the network input) of r1..r4.
STATE_LAYOUT = ((16, 2), (20, 4), (40, 8), (64, 16))


def state_shapes(batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Shapes of r1..r4 for a network input of ``height`` x ``width``: each stride-2 stage
    rounds odd sizes up, so stride s gives ceil(size / s)."""
    return [(batch, c, -(-height // s), -(-width // s)) for c, s in STATE_LAYOUT]


class _Refined(nn.Module):
    def __init__(self, net: MattingNetwork):
        super().__init__()
        self.net = net

    def forward(self, src, small, r1, r2, r3, r4):
        hid, *state = self.net.coarse(small, r1, r2, r3, r4)
        # Any ratio below 1 takes the refiner's path; the value itself is not used there.
        return (*self.net.finish(src, small, hid, 0.5), *state)


class _Plain(nn.Module):
    def __init__(self, net: MattingNetwork):
        super().__init__()
        self.net = net

    def forward(self, src, r1, r2, r3, r4):
        hid, *state = self.net.coarse(src, r1, r2, r3, r4)
        return (*self.net.finish(src, src, hid, 1.0), *state)


GRAPHS = {"refined": _Refined, "plain": _Plain}


def export(net: MattingNetwork, graph: str, opset: int = OPSET) -> bytes:
    """The ONNX bytes of ``graph`` (``refined`` or ``plain``), float32, with dynamic batch
    and spatial dimensions."""
    net = net.float().cpu().eval()
    src = torch.rand(1, 3, 96, 128)
    inputs = {"src": src}
    if graph == "refined":
        inputs["small"] = downsample(src, 0.5)
    shapes = state_shapes(1, *inputs.get("small", src).shape[2:])
    inputs.update({name: torch.zeros(shape) for name, shape in zip(STATE_NAMES, shapes)})
    outputs = ["fgr", "pha", *(f"{n}_out" for n in STATE_NAMES)]
    # Every tensor its own height/width names: they differ (r1 is half of small, ...), and
    # ONNX Runtime may share buffers between dimensions of the same name.
    dynamic = {name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in [*inputs, *outputs]}
    return to_onnx(GRAPHS[graph](net), inputs, outputs, dynamic, opset)


class OnnxMattingNetwork(nn.Module):
    """Drop-in for a CPU float32 :class:`MattingNetwork`: same call, same outputs (to
    float32 rounding), run by ONNX Runtime. Thread-safe (ORT sessions are), so many
    streams and worker threads may share one instance. ``graphs``: pre-built ONNX bytes
    by graph name (e.g. a quantised one), else exported from ``net`` on first use."""

    backend = "onnxruntime"

    def __init__(self, net: MattingNetwork, threads: int | None = None, graphs: dict[str, bytes] | None = None):
        super().__init__()
        self.net = net.float().cpu().eval()  # the weights; also runs segmentation passes
        self.threads = threads
        self._graphs = dict(graphs or {})
        self._sessions: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def refiner_name(self) -> str:
        return self.net.refiner_name

    def session(self, graph: str):
        with self._lock:
            if graph not in self._sessions:
                model = self._graphs.get(graph) or export(self.net, graph)
                self._sessions[graph] = ort_session(model, self.threads)
            return self._sessions[graph]

    def forward(self, src: Tensor, r1: Tensor | None = None, r2: Tensor | None = None,
                r3: Tensor | None = None, r4: Tensor | None = None,
                downsample_ratio: float = 1.0, segmentation_pass: bool = False,
                ) -> tuple[Tensor, ...]:
        if segmentation_pass:  # rare (not used for matting); not worth a third graph
            return self.net(src, r1, r2, r3, r4, downsample_ratio, segmentation_pass=True)
        if src.ndim != 4 or src.shape[1] != 3:
            raise ValueError(f"src must be [B, 3, H, W], got {list(src.shape)}")
        if src.device.type != "cpu" or src.dtype != torch.float32:
            raise ValueError(f"the onnxruntime backend takes CPU float32 input, not {src.device} {src.dtype}")
        feeds = {"src": _numpy(src)}
        network_input = src
        if downsample_ratio != 1:
            network_input = downsample(src, downsample_ratio)
            feeds["small"] = _numpy(network_input)
        b, _, h, w = network_input.shape
        for name, r, shape in zip(STATE_NAMES, (r1, r2, r3, r4), state_shapes(b, h, w)):
            feeds[name] = np.zeros(shape, np.float32) if r is None else _numpy(r)
        outputs = self.session("plain" if downsample_ratio == 1 else "refined").run(None, feeds)
        return tuple(torch.from_numpy(o) for o in outputs)


def _numpy(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())
