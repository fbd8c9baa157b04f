"""RVM in ONNX Runtime: on a CPU faster than eager PyTorch for the same float32 results,
and far steadier when other processes compete for the cores (see bench/README.md).

The network is exported with the frame size, batch size and network input size as
dynamic dimensions, and the downsampled frame as an input (computed by PyTorch), so one
graph serves every size and downsample ratio. Three graphs, each exported on first use:
``refined`` (encoder, decoder and the refiner, for ratios below 1) and ``plain`` (ratio 1,
no refiner), with ``plain16`` beside it for frames whose sides are multiples of 16. On
such inputs the decoder's upsampled maps need no crop to their skip connections' sizes
and the aligned graphs have none, where ONNX Runtime would copy each map once per crop
(4-5 ms of a 640x480 frame). Below ratio 1 the network input is always aligned
(:func:`matting.rvm.network.network_size`), so ``refined`` is the aligned kind only.
Exporting takes a second or two; with a cache (:class:`OnnxCache`) each graph is exported
once per checkpoint.

The recurrent state goes in and out of the graphs channels-last (``[B, H, W, C]``), the
layout of ONNX Runtime's int8 convolutions: with the state in NCHW, each ConvGRU's float
gates sat between layout transposes (38 in the int8 graph, 10 without; 5-9 % of the
int8 network's time). :class:`OnnxMattingNetwork` still takes and returns the state as
NCHW-shaped tensors, channels-last in memory, so callers see no difference. The refined
graph's network input (``small``) is channels-last too, and the decoder's last block
sums two convolutions instead of concatenating (:meth:`matting.rvm.decoder.OutputBlock.split_source`), so its
full-size maps stay channels-last from the upsampling to the output convolutions.

``precision="int8"``: the graphs' convolutions in static int8 (:mod:`matting.quantize`),
calibrated on a bundled person clip with the recurrent state carried, except the first
convolution: in int8 it alone cost +0.6 MAD on the temporal clip, the other 77 together
+0.07 (bench/README.md).
"""
from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from matting.onnx_cache import OnnxCache
from matting.onnx_runtime import OPSET, ort_session, to_onnx
from matting.quantize import calibration_clip, conv_names, quantize_int8
from matting.rvm.network import ALIGN, MattingNetwork, downsample

STATE_NAMES = ("r1", "r2", "r3", "r4")
# GRU channels and stride (relative to the network input) of r1..r4.
STATE_LAYOUT = ((16, 2), (20, 4), (40, 8), (64, 16))
PRECISIONS = ("fp32", "int8")
# Calibration: the clip (640x360) at ratio 0.5 for the refined graph (a 320x176 network
# input, about what live 640x480 sessions run); halved and at ratio 1 for the plain graphs.
CALIBRATION_RATIO = 0.5


def state_shapes(batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """Shapes of r1..r4 for a network input of ``height`` x ``width``: each stride-2 stage
    rounds odd sizes up, so stride s gives ceil(size / s)."""
    return [(batch, c, -(-height // s), -(-width // s)) for c, s in STATE_LAYOUT]


def graph_state_shapes(batch: int, height: int, width: int) -> list[tuple[int, int, int, int]]:
    """:func:`state_shapes` as the exported graphs take the state: channels-last."""
    return [(b, h, w, c) for b, c, h, w in state_shapes(batch, height, width)]


def _to_nchw(states) -> list[Tensor]:
    return [r.permute(0, 3, 1, 2) for r in states]


def _to_nhwc(states) -> list[Tensor]:
    return [r.permute(0, 2, 3, 1) for r in states]


class _Refined(nn.Module):
    def __init__(self, net: MattingNetwork):
        super().__init__()
        self.net = net

    def forward(self, src, small, r1, r2, r3, r4):
        small = small.permute(0, 3, 1, 2)  # the graph takes it channels-last
        hid, *state = self.net.coarse(small, *_to_nchw((r1, r2, r3, r4)))
        # Any ratio below 1 takes the refiner's path; the value itself is not used there.
        return (*self.net.finish(src, small, hid, 0.5), *_to_nhwc(state))


class _Plain(nn.Module):
    def __init__(self, net: MattingNetwork):
        super().__init__()
        self.net = net

    def forward(self, src, r1, r2, r3, r4):
        hid, *state = self.net.coarse(src, *_to_nchw((r1, r2, r3, r4)))
        return (*self.net.finish(src, src, hid, 1.0), *_to_nhwc(state))


@dataclass(frozen=True)
class Graph:
    """What one exported graph covers: ratios below 1 (the refiner's path) or ratio 1,
    and network inputs with sides that are multiples of ALIGN only (no crops) or any."""

    refined: bool
    aligned: bool

    def module(self, net: MattingNetwork) -> nn.Module:
        return (_Refined if self.refined else _Plain)(net)

    def example_src(self) -> Tensor:
        """The frame it is traced on. The crops are traced where the example needs them: the
        general graph's example needs one at every stage (network sides of 16k + 1 round up
        at each), an aligned one's at none."""
        return torch.rand(1, 3, 96, 128) if self.aligned else torch.rand(1, 3, 97, 129)


GRAPHS = {"refined": Graph(refined=True, aligned=True), "plain": Graph(refined=False, aligned=False),
          "plain16": Graph(refined=False, aligned=True)}


def graph_for(downsample_ratio: float, height: int, width: int) -> str:
    """The graph for a network input of ``height`` x ``width`` at ``downsample_ratio``."""
    aligned = height % ALIGN == 0 and width % ALIGN == 0
    if downsample_ratio == 1:
        return "plain16" if aligned else "plain"
    if not aligned:
        raise ValueError(f"below ratio 1 the network input is aligned to {ALIGN}, not {height}x{width}")
    return "refined"


def export(net: MattingNetwork, graph: str, opset: int = OPSET) -> bytes:
    """The ONNX bytes of ``graph`` (one of GRAPHS), float32, with dynamic batch and
    spatial dimensions, the decoder's source image padded to four channels
    (:meth:`RecurrentDecoder.pad_source`) and its last block's concatenation split
    (:meth:`matting.rvm.decoder.OutputBlock.split_source`)."""
    net = copy.deepcopy(net.float().cpu().eval())
    net.decoder.pad_source()
    net.decoder.decode0.split_source()
    spec = GRAPHS[graph]
    src = spec.example_src()
    inputs = {"src": src}
    network_input = src
    if spec.refined:
        network_input = downsample(src, 0.5)
        inputs["small"] = network_input.permute(0, 2, 3, 1).contiguous()
    shapes = graph_state_shapes(1, *network_input.shape[2:])
    inputs.update({name: torch.zeros(shape) for name, shape in zip(STATE_NAMES, shapes, strict=False)})
    outputs = ["fgr", "pha", *(f"{n}_out" for n in STATE_NAMES)]
    # Every tensor its own height/width names: they differ (r1 is half of small, ...), and
    # ONNX Runtime may share buffers between dimensions of the same name.
    channels_last = {*STATE_NAMES, *(f"{n}_out" for n in STATE_NAMES), "small"}
    dynamic = {name: {0: "batch", **({1: f"{name}_height", 2: f"{name}_width"} if name in channels_last
                                     else {2: f"{name}_height", 3: f"{name}_width"})}
               for name in [*inputs, *outputs]}
    return to_onnx(spec.module(net), inputs, outputs, dynamic, opset)


def calibration_feeds(fp32: bytes, graph: str, threads: int | None = None) -> list[dict[str, np.ndarray]]:
    """``graph``'s inputs over the calibration clip, with the recurrent state that the
    float model ``fp32`` (that graph's ONNX bytes) carries from frame to frame."""
    session = ort_session(fp32, threads)
    spec = GRAPHS[graph]
    feeds: list[dict[str, np.ndarray]] = []
    state: list[np.ndarray] = []
    for rgb in calibration_clip():
        src = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255)
        if not spec.refined:  # at half size, which downsample() aligns, as the aligned graph needs
            src = downsample(src, 0.5)
        feed = {"src": src.numpy()}
        network_input = src
        if spec.refined:
            network_input = downsample(src, CALIBRATION_RATIO)
            feed["small"] = _numpy(network_input.permute(0, 2, 3, 1))
        shapes = graph_state_shapes(1, *network_input.shape[2:])
        feed.update({name: state[i] if state else np.zeros(shape, np.float32)
                     for i, (name, shape) in enumerate(zip(STATE_NAMES, shapes, strict=False))})
        feeds.append(feed)
        state = session.run(None, feed)[2:]
    return feeds


class OnnxMattingNetwork(nn.Module):
    """Drop-in for a CPU float32 :class:`MattingNetwork`: same call, same outputs (to
    float32 rounding, or int8's), run by ONNX Runtime. Thread-safe (ORT sessions are), so
    many streams and worker threads may share one instance. A run that starts while
    another is under way runs on half the threads (:attr:`thread_counts`): two streams'
    frames side by side then share the cores instead of each spreading over all of them.
    Graphs are built on first use (:meth:`prepare` builds them ahead), through ``cache``
    when given."""

    backend = "onnxruntime"

    def __init__(self, net: MattingNetwork, threads: int | None = None, precision: str = "fp32",
                 cache: OnnxCache | None = None):
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {precision!r}")
        self.net = net.float().cpu().eval()  # the weights; also runs segmentation passes
        self.threads = threads
        self.precision = precision
        self.cache = cache
        self._sessions: dict[tuple[str, int], object] = {}
        self._in_flight = 0  # runs under way, from every thread
        self._lock = threading.Lock()

    @property
    def refiner_name(self) -> str:
        return self.net.refiner_name

    def model(self, graph: str, precision: str | None = None) -> bytes:
        """The ONNX bytes of ``graph`` in ``precision`` (default: this instance's)."""
        precision = precision or self.precision
        if precision == "fp32":
            def build() -> bytes:
                return export(self.net, graph)
        else:
            def build() -> bytes:
                fp32 = self.model(graph, "fp32")
                feeds = calibration_feeds(fp32, graph, self.threads)
                return quantize_int8(fp32, feeds, keep_float=conv_names(fp32)[:1])
        if self.cache is None:
            return build()
        return self.cache.get(f"{graph}-{self.refiner_name}-{precision}", build)

    @property
    def thread_counts(self) -> tuple[int, int]:
        """Intra-op threads of a run alone, and of a run that starts while another is in
        flight: side by side on two cores, two one-thread runs carried a frame every 15.1-15.8
        ms against 16.8-17.7 for two two-thread runs, while alone two threads take 23 ms
        against 31 (bench/README.md)."""
        alone = self.threads or os.cpu_count() or 1
        return alone, max(1, alone // 2)

    def session(self, graph: str, threads: int | None = None):
        """``graph``'s ONNX Runtime session with ``threads`` intra-op threads (default:
        a run alone's)."""
        threads = threads or self.thread_counts[0]
        with self._lock:
            if (graph, threads) not in self._sessions:
                self._sessions[graph, threads] = ort_session(self.model(graph), threads)
            return self._sessions[graph, threads]

    def prepare(self) -> None:
        """Build (or read from the cache) and open every graph now, at both thread counts,
        so that no stream's frame waits for an export, a calibration or a session."""
        for graph in GRAPHS:
            for threads in set(self.thread_counts):
                self.session(graph, threads)

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """ONNX Runtime's outputs of ``graph`` for ``feeds`` (its inputs by name), on the
        thread count for the runs now in flight."""
        with self._lock:
            others = self._in_flight
            self._in_flight += 1
        try:
            return self.session(graph, self.thread_counts[1 if others else 0]).run(None, feeds)
        finally:
            with self._lock:
                self._in_flight -= 1

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
            feeds["small"] = _numpy(network_input.permute(0, 2, 3, 1))
        b, _, h, w = network_input.shape
        for name, r, shape in zip(STATE_NAMES, (r1, r2, r3, r4), graph_state_shapes(b, h, w), strict=False):
            # A state this backend returned is channels-last in memory: no copy here.
            feeds[name] = np.zeros(shape, np.float32) if r is None else _numpy(r.permute(0, 2, 3, 1))
        fgr, pha, *state = self.run_graph(graph_for(downsample_ratio, h, w), feeds)
        return (torch.from_numpy(fgr), torch.from_numpy(pha), *_to_nchw(torch.from_numpy(r) for r in state))


def _numpy(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().numpy())
