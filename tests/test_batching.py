"""Cross-session batching: frames of several streams in one forward pass give each stream
exactly what it would get alone, and every stream keeps its own recurrent state."""
from __future__ import annotations

import asyncio
import os
import threading

import av
import numpy as np
import pytest
import torch
from PIL import Image

from matting.batching import FrameBatcher, stack_states
from matting.config import RuntimeConfig
from matting.runtime import MattingRuntime
from matting.session import VideoMattingSession

CLIP = "temporal/p3m_00a7a27c_porch_512x288/com.mkv"
TOLERANCE = 1e-4  # float32 rounding of batched vs single convolutions


@pytest.fixture(scope="module")
def clip(media) -> list[np.ndarray]:
    """60 real frames at 256x144 (small: quick on 2 cores)."""
    with av.open(str(media / CLIP)) as container:
        return [np.asarray(Image.fromarray(f.to_ndarray(format="rgb24")).resize((256, 144), Image.BILINEAR))
                for f in container.decode(video=0)]


@pytest.fixture(scope="module")
def model(runtime):
    return runtime.video_model()


@pytest.fixture(scope="module")
def onnx_model(model):
    from matting.rvm.onnx_backend import OnnxMattingNetwork

    return OnnxMattingNetwork(model, threads=2)


def streams(clip, starts=(0, 20, 40), frames=3) -> list[list[np.ndarray]]:
    """Different parts of the clip: each stream sees a different person position."""
    return [clip[s:s + frames] for s in starts]


def alone(model, stream, ratio) -> list[np.ndarray]:
    session = VideoMattingSession(model, ratio)
    return [session.process(f).alpha for f in stream]


def together(sessions: list[VideoMattingSession], inputs: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Each session in its own thread; a barrier makes them submit each frame together."""
    barrier = threading.Barrier(len(sessions), timeout=30)
    results: list[list[np.ndarray]] = [[] for _ in sessions]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            for frame in inputs[i]:
                barrier.wait()
                results[i].append(sessions[i].process(frame).alpha)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    return results


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_batched_streams_equal_each_stream_alone(backend, ratio, model, onnx_model, clip):
    net = model if backend == "torch" else onnx_model
    inputs = streams(clip)
    expected = [alone(net, s, ratio) for s in inputs]
    batcher = FrameBatcher(net, max_batch=8, window_ms=500)
    try:
        sessions = [VideoMattingSession(net, ratio, batcher=batcher) for _ in inputs]
        got = together(sessions, inputs)
    finally:
        batcher.close()
    worst = max(float(np.abs(g - e).max())
                for gs, es in zip(got, expected, strict=False) for g, e in zip(gs, es, strict=False))
    print(f"\n{backend} ratio {ratio}: {batcher.stats.batches} batches, largest {batcher.stats.largest}, "
          f"max |batched - alone| = {worst:.2e}")
    assert batcher.stats.largest == 3 and batcher.stats.batches == 3  # really one pass per frame
    assert worst < TOLERANCE
    # Streams at different clip positions must differ: the rows did not get mixed up.
    assert np.abs(got[0][-1] - got[2][-1]).mean() > 1e-2


def test_each_stream_keeps_its_own_state(model, clip):
    """A stream on its first frame (no state yet) batched with one that has history."""
    ratio = 0.5
    veteran_frames, newcomer_frames = clip[10:13], clip[30:32]
    veteran_alone = alone(model, veteran_frames, ratio)
    newcomer_alone = alone(model, newcomer_frames, ratio)
    batcher = FrameBatcher(model, max_batch=4, window_ms=500)
    try:
        veteran = VideoMattingSession(model, ratio, batcher=batcher)
        veteran.process(veteran_frames[0])  # alone in its batch: gets state
        newcomer = VideoMattingSession(model, ratio, batcher=batcher)
        got = together([veteran, newcomer], [veteran_frames[1:], newcomer_frames])
    finally:
        batcher.close()
    assert batcher.stats.largest == 2
    assert max(np.abs(g - e).max() for g, e in zip(got[0], veteran_alone[1:], strict=False)) < TOLERANCE
    assert max(np.abs(g - e).max() for g, e in zip(got[1], newcomer_alone, strict=False)) < TOLERANCE
    # Own state tensors, shaped for one stream, not views that mix the two.
    assert all(r.shape[0] == 1 for r in veteran.state + newcomer.state)
    assert not torch.equal(veteran.state[3], newcomer.state[3])


def test_different_sizes_run_in_separate_batches(model, clip):
    small = [np.ascontiguousarray(f[:120, :200]) for f in clip[:2]]
    inputs = [clip[:2], small]
    expected = [alone(model, s, 1.0) for s in inputs]
    batcher = FrameBatcher(model, max_batch=4, window_ms=50)
    try:
        got = together([VideoMattingSession(model, 1.0, batcher=batcher) for _ in inputs], inputs)
    finally:
        batcher.close()
    assert batcher.stats.largest == 1 and batcher.stats.frames == 4
    assert all(np.abs(g - e).max() < TOLERANCE
               for gs, es in zip(got, expected, strict=False) for g, e in zip(gs, es, strict=False))


def test_full_batches_go_at_once_and_overflow_waits_for_the_next(model, clip):
    inputs = streams(clip, starts=(0, 15, 30, 45, 50), frames=2)
    expected = [alone(model, s, 1.0) for s in inputs]
    batcher = FrameBatcher(model, max_batch=2, window_ms=200)
    try:
        got = together([VideoMattingSession(model, 1.0, batcher=batcher) for _ in inputs], inputs)
    finally:
        batcher.close()
    print(f"\n5 streams, max_batch 2: {batcher.stats}")
    assert batcher.stats.largest == 2 and batcher.stats.frames == 10
    assert all(np.abs(g - e).max() < TOLERANCE
               for gs, es in zip(got, expected, strict=False) for g, e in zip(gs, es, strict=False))


def test_errors_reach_the_caller_and_the_batcher_keeps_working(model, clip):
    batcher = FrameBatcher(model, max_batch=2, window_ms=0)
    try:
        with pytest.raises(ValueError, match="src must be"):
            batcher.step(torch.rand(1, 4, 32, 32), (None, None, None, None), 1.0)
        with pytest.raises(ValueError, match="one frame"):
            batcher.step(torch.rand(2, 3, 32, 32), (None, None, None, None), 1.0)
        session = VideoMattingSession(model, 1.0, batcher=batcher)
        assert np.abs(session.process(clip[0]).alpha - alone(model, clip[:1], 1.0)[0]).max() < TOLERANCE
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.step(torch.rand(1, 3, 32, 32), (None, None, None, None), 1.0)


def test_stack_states_fills_first_frames_with_zeros():
    known = tuple(torch.ones(1, c, 4, 4) for c in (16, 20, 40, 64))
    stacked = stack_states([known, (None, None, None, None)])
    assert [tuple(s.shape) for s in stacked] == [(2, c, 4, 4) for c in (16, 20, 40, 64)]
    assert all(s[0].eq(1).all() and s[1].eq(0).all() for s in stacked)
    assert stack_states([(None,) * 4, (None,) * 4]) == (None, None, None, None)


def test_runtime_hands_every_session_the_same_batcher():
    runtime = MattingRuntime(RuntimeConfig(device="cpu", download=False, batch_max=4, batch_window_ms=2))
    try:
        a, b = runtime.new_session(batched=True), runtime.new_session(batched=True)
        assert a.batcher is b.batcher and a.batcher.max_batch == 4
        assert runtime.new_session().batcher is None  # file jobs: nobody to batch with
    finally:
        runtime.batcher().close()
    auto = MattingRuntime(RuntimeConfig(device="cpu", download=False))
    assert auto.batch_max == 1 and auto.batcher() is None  # auto: off on a CPU


def test_server_sizes_its_inference_pool_to_the_batch():
    from server.app import CONTEXT, create_app
    from server.config import ModelConfig, ServerConfig

    def workers(**model) -> int:
        config = ServerConfig(model=ModelConfig(device="cpu", download=False, **model))
        app = create_app(config)
        try:
            return app[CONTEXT].inference._max_workers
        finally:
            app[CONTEXT].inference.shutdown()

    assert workers() == min(2, os.cpu_count() or 1)  # auto on a CPU: no batching, two streams side by side
    assert workers(batch_max=4) == 4  # a batch of 4 needs 4 frames in flight
    assert workers(batch_max=4, inference_workers=2) == 2
    with pytest.raises(ValueError, match="ABRAR_BATCH_MAX"):
        ModelConfig(batch_max=-1)


async def test_live_pipelines_share_the_batcher_when_batching_is_on(clip, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from fractions import Fraction

    from matting.compositing import Background
    from server.live.pipeline import LivePipeline

    runtime = MattingRuntime(RuntimeConfig(device="cpu", download=False, batch_max=2, batch_window_ms=2000))
    executor = ThreadPoolExecutor(2)
    frame = av.VideoFrame.from_ndarray(clip[0], format="rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 30)
    try:
        pipelines = [LivePipeline(runtime, executor, Background("color"), recordings_dir=tmp_path,
                                  name=f"p{i}", downsample_ratio=1.0) for i in range(2)]
        await asyncio.wait_for(asyncio.gather(*(p.process(frame) for p in pipelines)), 60)
    finally:
        executor.shutdown()
        runtime.batcher().close()
    batcher = runtime.batcher()
    assert all(p._session.batcher is batcher for p in pipelines)
    assert batcher.stats.batches == 1 and batcher.stats.largest == 2  # both frames in one pass
