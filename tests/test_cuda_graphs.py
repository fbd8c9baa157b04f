"""CUDA graph replay of RVM gives the eager network's results, per shape and per batch.

The GPU tests skip without CUDA (CI has none); they ran on a lent H100 (see bench/README.md).
Self-contained, so that they also run with ``--noconftest`` on a bare GPU machine.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(os.environ.get("ABRAR_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
VIDEO = SHARED / "media/video/pixabay_thoughtful_35590_8s_640x360.mp4"
os.environ.setdefault("ABRAR_MODELS_DIR", str(SHARED / "models"))

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def frames(count: int, size: tuple[int, int] = (640, 360)) -> list[torch.Tensor]:
    import cv2

    from matting.session import network_input

    capture = cv2.VideoCapture(str(VIDEO))
    out = []
    while len(out) < count:
        ok, bgr = capture.read()
        assert ok, f"could not read {VIDEO}"
        rgb = cv2.resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size)
        out.append(network_input(rgb, torch.device("cuda"), torch.float16))
    capture.release()
    return out


@pytest.fixture(scope="module")
def eager():
    from matting import weights
    from matting.rvm import load_rvm

    return load_rvm(weights.resolve("rvm", download=False), device=torch.device("cuda"), dtype=torch.float16)


def run(net, srcs, ratio):
    from matting.session import EMPTY_STATE, step

    state, alphas = EMPTY_STATE, []
    for src in srcs:
        _, pha, state = step(net, src, state, ratio)
        alphas.append(pha)
    return alphas


@cuda
def test_replay_matches_eager_with_state_carried(eager):
    from matting.cuda_graphs import CudaGraphMattingNetwork

    srcs = frames(8)
    graphed = CudaGraphMattingNetwork(eager)
    want, got = run(eager, srcs, 0.5), run(graphed, srcs, 0.5)
    assert graphed.graph_count == 1
    for w, g in zip(want, got, strict=False):
        assert (w.float() - g.float()).abs().max().item() < 2e-3
    # each call handed back its own tensors, not the graph's buffers (which the next replay overwrites)
    assert (got[0].float() - got[-1].float()).abs().max().item() > 1e-2


@cuda
def test_each_batch_size_and_ratio_gets_its_own_graph(eager):
    from matting.batching import stack_states
    from matting.cuda_graphs import CudaGraphMattingNetwork
    from matting.session import EMPTY_STATE, step

    srcs = frames(4)
    graphed = CudaGraphMattingNetwork(eager)
    run(graphed, srcs[:2], 0.5)
    _, _, state = step(graphed, srcs[0], EMPTY_STATE, 0.375)
    # a batch of a carried stream and a new one, as the batcher builds it
    batch = torch.cat([srcs[1], srcs[2]])
    stacked = stack_states([state, EMPTY_STATE])
    _, pha, _ = step(graphed, batch, stacked, 0.375)
    assert graphed.graph_count == 3
    _, want, _ = step(eager, batch, stacked, 0.375)
    assert (pha.float() - want.float()).abs().max().item() < 2e-3
    # Rows of a batch are the streams alone, up to fp16 rounding: cuDNN picks other
    # kernels for another batch size (measured on an H100: 1/256 at most).
    _, alone_carried, _ = step(eager, srcs[1], state, 0.375)
    _, alone_new, _ = step(eager, srcs[2], EMPTY_STATE, 0.375)
    assert (pha[0:1].float() - alone_carried.float()).abs().max().item() < 1e-2
    assert (pha[1:2].float() - alone_new.float()).abs().max().item() < 1e-2


@cuda
def test_threads_share_one_wrapper(eager):
    from matting.cuda_graphs import CudaGraphMattingNetwork

    srcs = frames(6)
    graphed = CudaGraphMattingNetwork(eager)
    want = [a.float().cpu() for a in run(eager, srcs, 0.5)]
    results: dict[int, list] = {}

    def stream(k: int) -> None:
        results[k] = [a.float().cpu() for a in run(graphed, srcs, 0.5)]

    threads = [threading.Thread(target=stream, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert max((w - g).abs().max().item() for w, g in zip(want, results[k], strict=False)) < 2e-3


def test_refuses_a_cpu_model():
    from matting.cuda_graphs import CudaGraphMattingNetwork
    from matting.rvm import MattingNetwork

    with pytest.raises(ValueError, match="CUDA model"):
        CudaGraphMattingNetwork(MattingNetwork(refiner="fast_guided_filter"))


def test_runtime_wraps_only_on_cuda():
    from matting.config import RuntimeConfig
    from matting.cuda_graphs import CudaGraphMattingNetwork
    from matting.runtime import MattingRuntime

    cpu = MattingRuntime(RuntimeConfig(device="cpu", backend="torch", download=False)).video_model()
    assert not isinstance(cpu, CudaGraphMattingNetwork)
    if torch.cuda.is_available():
        gpu = MattingRuntime(RuntimeConfig(device="cuda", download=False)).video_model()
        assert isinstance(gpu, CudaGraphMattingNetwork)
        off = MattingRuntime(RuntimeConfig(device="cuda", download=False, cuda_graphs=False)).video_model()
        assert not isinstance(off, CudaGraphMattingNetwork)
        result = MattingRuntime(RuntimeConfig(device="cuda", download=False)).new_session().process(
            np.zeros((360, 640, 3), np.uint8))
        assert result.alpha.shape == (360, 640)
