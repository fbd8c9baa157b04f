"""Speed levers that change how RVM runs but must not change what it computes (the ONNX
Runtime backend), and the choice of internal resolution from a time budget."""
from __future__ import annotations

import copy
import threading

import av
import cv2
import numpy as np
import onnx
import pytest
import torch

from conftest import load_alpha
from matting import metrics, weights
from matting.config import RuntimeConfig
from matting.device import DeviceChoice
from matting.runtime import MattingRuntime, resolve_backend
from matting.rvm import load_rvm
from matting.rvm.network import downsample, network_size
from matting.rvm.onnx_backend import GRAPHS, OnnxMattingNetwork, export, graph_for, state_shapes
from matting.session import VideoMattingSession
from matting.speed import (
    AdaptiveRatio,
    choose_downsample_ratio,
    network_megapixels,
    usable_ratios,
)

CLIP = "temporal/p3m_00a7a27c_porch_512x288"
FRAMES = 8


@pytest.fixture(scope="module")
def clip(media) -> tuple[list[np.ndarray], list[np.ndarray]]:
    with av.open(str(media / CLIP / "com.mkv")) as container:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(FRAMES), container.decode(video=0), strict=False)]
    return frames, [load_alpha(media / CLIP / "pha" / f"{i:04d}.png") for i in range(FRAMES)]


@pytest.fixture(scope="module")
def net():
    return load_rvm(weights.resolve("rvm", download=False), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def onnx_net(net):
    return OnnxMattingNetwork(net, threads=2)


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_onnx_backend_matches_torch_on_real_video(net, onnx_net, clip, ratio):
    frames, truths = clip
    results = {}
    for name, model in (("torch", net), ("onnxruntime", onnx_net)):
        session = VideoMattingSession(model, ratio)
        mattes = [session.process(f) for f in frames]
        alphas = [m.alpha for m in mattes]
        results[name] = {"alphas": alphas, "fgr": [m.foreground for m in mattes], "state": session.state,
                         "mad": float(np.mean([metrics.mad(a, t) for a, t in zip(alphas, truths, strict=False)])),
                         "dtssd": metrics.dtssd(alphas, truths)}
    t, o = results["torch"], results["onnxruntime"]
    pha = max(float(np.abs(a - b).max()) for a, b in zip(t["alphas"], o["alphas"], strict=False))
    fgr = max(float(np.abs(a - b).max()) for a, b in zip(t["fgr"], o["fgr"], strict=False))
    state = max(float((a - b).abs().max()) for a, b in zip(t["state"], o["state"], strict=False))
    print(f"\nratio {ratio}, {FRAMES} frames, state carried: max |torch - onnxruntime| pha {pha:.1e} "
          f"fgr {fgr:.1e} state {state:.1e}; MAD {t['mad']:.4f} vs {o['mad']:.4f}, "
          f"dtSSD {t['dtssd']:.4f} vs {o['dtssd']:.4f}")
    # Measured ~1e-5 through the network and state (float32 rounding in other kernels);
    # up to 1e-3 on fgr at ratio 0.5, where the guided filter divides by local variance
    # + 1e-5 and so magnifies rounding in flat areas: a quarter of an 8-bit level. A wrong
    # layer, weight or state wiring gives differences of 0.1 or more.
    assert pha < 2e-3 and fgr < 2e-3 and state < 1e-3
    assert abs(t["mad"] - o["mad"]) < 0.01 and abs(t["dtssd"] - o["dtssd"]) < 0.01


def test_onnx_backend_takes_any_size_and_batch(net, onnx_net):
    """Every frame size (odd ones too) and batch size, through both plain graphs (with
    and without the crops) and the refined one."""
    torch.manual_seed(0)
    for shape, ratio in (((1, 3, 101, 67), 1.0), ((2, 3, 90, 123), 0.5), ((1, 3, 96, 64), 1.0),
                         ((2, 3, 96, 160), 0.5)):
        src = torch.rand(shape)
        with torch.inference_mode():
            expected = net(src, downsample_ratio=ratio)
            got = onnx_net(src, downsample_ratio=ratio)
        assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
        assert max(float((g - e).abs().max()) for g, e in zip(got, expected, strict=False)) < 1e-3


def test_aligned_graphs_have_no_crops_and_run_only_where_none_is_needed(net):
    assert [graph_for(r, h, w) for r, h, w in ((1, 288, 512), (1, 180, 320), (0.5, 240, 320), (0.375, 176, 240))] \
        == ["plain16", "plain", "refined", "refined"]
    with pytest.raises(ValueError, match="aligned"):
        graph_for(0.375, 180, 240)  # downsample() never makes this
    crops = {graph: [n.name for n in onnx.load_from_string(export(net, graph)).graph.node
                     if n.op_type == "Slice" and n.name.startswith("/decoder/decode")] for graph in GRAPHS}
    # the four upsampling crops, in height and width, only in the general graph
    assert len(crops["plain"]) == 8 and crops["plain16"] == crops["refined"] == [], crops


def assert_same_outputs(net, changed) -> None:
    """``changed`` (an export-only rewrite of ``net``) gives ``net``'s outputs, at ratio 1
    and through the refiner."""
    src = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        for ratio in (1.0, 0.5):
            diff = max(float((a - b).abs().max()) for a, b in zip(net(src, downsample_ratio=ratio),
                                                                  changed(src, downsample_ratio=ratio), strict=True))
            assert diff < 1e-5, (ratio, diff)


def test_exported_convolutions_take_multiples_of_four_channels_and_compute_the_same(net):
    """ONNX Runtime runs a convolution of 35 input channels at less than half the speed
    of one of 36 (bench/README.md), and the decoder's blocks take 35, 59, 107 and 171
    (features plus the 3-channel source). The exported graphs give the source a fourth,
    zero-weighted channel: every convolution but the first (the pixels) then takes a
    multiple of four, and the outputs stay the same."""
    padded = copy.deepcopy(net)
    padded.decoder.pad_source()
    assert [b.conv[0].in_channels for b in (padded.decoder.decode3, padded.decoder.decode2,
                                            padded.decoder.decode1, padded.decoder.decode0)] == [172, 108, 60, 36]
    assert_same_outputs(net, padded)
    for graph in GRAPHS:
        model = onnx.load_from_string(export(net, graph))
        shapes = {i.name: list(i.dims) for i in model.graph.initializer}
        dense = [shapes[n.input[1]][1] for n in model.graph.node if n.op_type == "Conv"
                 and all(a.i == 1 for a in n.attribute if a.name == "group")]
        assert dense[0] == 3 and [c for c in dense[1:] if c % 4] == [], (graph, dense)


def test_decoder_output_block_sums_two_convolutions_instead_of_concatenating(net):
    """At the network's full size the concatenation of the upsampled features and the
    source sat between channels-last int8 convolutions: two layout transposes or a slow
    channels-last concatenation (bench/README.md). Split, the block computes the same and
    the exported graphs have no concatenation there."""
    split = copy.deepcopy(net)
    split.decoder.pad_source()
    split.decoder.decode0.split_source()
    late = copy.deepcopy(net)
    late.decoder.decode0.split_source()
    with pytest.raises(RuntimeError, match="before splitting"):  # the split would not see the padding
        late.decoder.pad_source()
    assert_same_outputs(net, split)
    for graph in GRAPHS:
        ops = {n.name: n.op_type for n in onnx.load_from_string(export(net, graph)).graph.node}
        decode0 = [name for name, op in ops.items() if name.startswith("/decoder/decode0/")]
        assert "Concat" not in {ops[name] for name in decode0}, (graph, decode0)
        assert {"/decoder/decode0/split/conv_x/Conv", "/decoder/decode0/split/conv_s/Conv"} <= set(decode0)


def test_graphs_carry_the_state_channels_last_and_callers_still_see_nchw(net, onnx_net):
    """ONNX Runtime's int8 convolutions work channels-last; a state in NCHW put layout
    transposes around every ConvGRU (bench/README.md). The graphs take it channels-last
    (and the refined graph its network input too), the backend hands the state on as
    NCHW-shaped views of that memory and takes them back without a copy, and a carried
    state gives the torch network's results."""
    for graph in GRAPHS:
        inputs = {i.name: [d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim]
                  for i in onnx.load_from_string(export(net, graph)).graph.input}
        assert [inputs[n][3] for n in ("r1", "r2", "r3", "r4")] == [16, 20, 40, 64], (graph, inputs)
        assert inputs["src"][1] == 3 and (not GRAPHS[graph].refined or inputs["small"][3] == 3), (graph, inputs)
    src = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = net(src, *net(src, downsample_ratio=0.5)[2:], downsample_ratio=0.5)
        first = onnx_net(src, downsample_ratio=0.5)
        got = onnx_net(src, *first[2:], downsample_ratio=0.5)
    for state in first[2:]:
        assert state.permute(0, 2, 3, 1).is_contiguous()
    assert [tuple(g.shape) for g in got] == [tuple(e.shape) for e in expected]
    assert max(float((g - e).abs().max()) for g, e in zip(got, expected, strict=True)) < 1e-3


class HeldRun:
    """A real ONNX Runtime session that records the thread count of each run and, when
    ``hold`` is set, keeps its run from finishing until ``release`` is set, so that a
    second run surely starts while it is in flight."""

    def __init__(self, session, threads: int, log: list[int], hold: threading.Event | None,
                 release: threading.Event):
        self.session, self.threads, self.log, self.hold, self.release = session, threads, log, hold, release

    def run(self, outputs, feeds):
        self.log.append(self.threads)
        result = self.session.run(outputs, feeds)
        if self.hold is not None and not self.hold.is_set():
            self.hold.set()
            assert self.release.wait(30), "the second run never came"
        return result


def test_a_run_beside_another_takes_half_the_threads_and_gives_the_same_outputs(net):
    """Two streams' frames side by side on two cores: one thread each carried 10 % more
    frames than two each (bench/README.md), while a frame alone keeps both threads."""
    model = OnnxMattingNetwork(net, threads=2)
    model.prepare()
    assert model.thread_counts == (2, 1)
    assert {key for key in model._sessions} == {(g, t) for g in GRAPHS for t in (2, 1)}
    src = torch.rand(1, 3, 96, 128, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        alone = model(src, downsample_ratio=0.5)
    log: list[int] = []
    first_running, second_done = threading.Event(), threading.Event()
    for (graph, threads), session in list(model._sessions.items()):
        model._sessions[graph, threads] = HeldRun(session, threads, log, first_running if threads == 2 else None,
                                                  second_done)
    results: dict[str, tuple] = {}

    def first() -> None:
        with torch.inference_mode():
            results["first"] = model(src, downsample_ratio=0.5)

    thread = threading.Thread(target=first)
    thread.start()
    assert first_running.wait(30)
    try:
        with torch.inference_mode():
            results["second"] = model(src, downsample_ratio=0.5)
    finally:
        second_done.set()
        thread.join(30)
    assert log == [2, 1], "the run beside another should have taken the one-thread session"
    for got in results.values():
        assert max(float((g - e).abs().max()) for g, e in zip(got, alone, strict=True)) < 1e-5
    with torch.inference_mode():
        model(src, downsample_ratio=0.5)
    assert log[-1] == 2, "alone again: both threads"
    assert OnnxMattingNetwork(net, threads=1).thread_counts == (1, 1)


@pytest.mark.parametrize("size, ratio, expected", [
    ((480, 640), 0.375, (176, 240)),   # live 640x480 at the adaptive floor (180x240 exactly)
    ((480, 640), 0.5, (240, 320)),
    ((720, 1280), 0.25, (176, 320)),   # 180x320 exactly
    ((1080, 1920), 0.25, (272, 480)),
    ((101, 67), 0.5, (48, 32)),
    ((20, 30), 0.25, (16, 16)),        # never below one block
    ((101, 67), 1.0, (101, 67)),       # ratio 1: the frame itself
])
def test_network_input_sides_are_the_nearest_multiples_of_16(size, ratio, expected):
    assert network_size(*size, ratio) == expected
    assert tuple(downsample(torch.rand(1, 3, *size), ratio).shape[2:]) == expected


def test_state_shapes_match_the_network(net):
    small = torch.rand(1, 3, 75, 133)
    with torch.inference_mode():
        _, *state = net.coarse(small, None, None, None, None)
    assert [tuple(s.shape) for s in state] == state_shapes(1, 75, 133)


def test_export_leaves_the_shared_network_untouched(clip):
    """The exporter switches train/eval mode; the torch network must stay in eval mode with
    its BatchNorm statistics unchanged (a regression here corrupts every later frame)."""
    model = load_rvm(weights.resolve("rvm", download=False), device="cpu", dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for graph in GRAPHS:
        assert export(model, graph)
    assert not any(m.training for m in model.modules())
    src = torch.from_numpy(clip[0][0][:96, :128].copy()).permute(2, 0, 1)[None].float() / 255
    model(src)  # outside inference mode: a training-mode BN would update its statistics now
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_backend_resolution():
    cpu = DeviceChoice(torch.device("cpu"), torch.float32)
    assert resolve_backend("auto", cpu) == "onnxruntime"  # onnx and onnxruntime are installed here
    assert resolve_backend("torch", cpu) == "torch"
    gpu = DeviceChoice(torch.device("cuda"), torch.float16)
    assert resolve_backend("auto", gpu) == "torch"
    with pytest.raises(ValueError, match="CPU in fp32 only"):
        resolve_backend("onnxruntime", gpu)
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("tensorrt", cpu)


def test_runtime_with_onnxruntime_backend_mattes(clip):
    runtime = MattingRuntime(RuntimeConfig(device="cpu", download=False, backend="onnxruntime", threads=2))
    assert isinstance(runtime.video_model(), OnnxMattingNetwork)
    frames, truths = clip
    alpha = runtime.new_session(1.0).process(frames[0]).alpha
    assert alpha.shape == truths[0].shape and metrics.mad(alpha, truths[0]) < 10


# -- internal resolution from a time budget ----------------------------------------------------

def test_choose_downsample_ratio_fits_the_budget():
    # 640x480 at 600 ms per network megapixel plus 10 ms fixed: 0.5 (0.077 MP) costs 56 ms.
    assert choose_downsample_ratio(480, 640, 60, 600, fixed_ms=10) == 0.5
    assert choose_downsample_ratio(480, 640, 40, 600, fixed_ms=10) == 0.375
    assert choose_downsample_ratio(480, 640, 10_000, 600) == 0.75  # 480 px: the most it uses
    # Nothing fits: the smallest ratio that keeps 240 px on the long side, never less.
    assert choose_downsample_ratio(480, 640, 1, 600) == 0.375
    assert choose_downsample_ratio(1080, 1920, 1, 600) == 0.25
    # Small frames are not shrunk below 240 px (here: not at all), huge ones not above 512 px.
    assert usable_ratios(120, 160) == [1.0]
    assert usable_ratios(2160, 3840) == [512 / 3840]
    assert usable_ratios(480, 640) == [0.375, 0.5, 0.625, 0.75]


def simulate(controller: AdaptiveRatio, frames: int, ms_per_megapixel: float, fixed_ms: float,
             h: int = 480, w: int = 640) -> list[float]:
    ratios = []
    for _ in range(frames):
        ratio = controller.ratio_for(h, w)
        controller.observe(fixed_ms + ms_per_megapixel * network_megapixels(h, w, ratio), h, w)
        ratios.append(ratio)
    return ratios


def test_adaptive_ratio_follows_the_machine_without_flapping():
    controller = AdaptiveRatio(budget_ms=60, start_ratio=0.5, hold_frames=30, backoff_frames=300, fixed_ms=10)
    # Busy machine: 0.5 takes 10 + 1000 * 0.077 = 87 ms > 60, 0.375 takes 53 ms.
    busy = simulate(controller, 120, ms_per_megapixel=1000, fixed_ms=10)
    assert busy[0] == 0.5 and busy[-1] == 0.375
    settled = controller.changes
    simulate(controller, 120, ms_per_megapixel=1000, fixed_ms=10)
    assert controller.changes == settled  # stays put once it fits
    # Quiet machine: 300 ms per MP, so 0.75 (0.173 MP, 62 ms) is over 0.8 x 60 and 0.625 fits;
    # it goes back above 0.375 only once the back-off after the slow 0.5 has run out.
    quiet = simulate(controller, 300, ms_per_megapixel=300, fixed_ms=10)
    print(f"\nbusy: {busy[0]} -> {busy[-1]}; quiet: -> {quiet[-1]}; {controller.changes} changes in 540 frames")
    assert quiet[:60] == [0.375] * 60 and quiet[-1] == 0.625
    assert controller.changes <= 4


def test_session_with_budget_lowers_its_ratio_and_restarts_its_state(net, clip):
    session = VideoMattingSession(net, budget_ms=1.0)  # no CPU meets 1 ms
    session.adaptive.hold_frames = 2
    frames = [cv2.resize(f, (640, 360)) for f in clip[0][:4]]  # 0.5 to 0.375 are usable here
    ratios = []
    for frame in frames:
        ratios.append(session.ratio_for(360, 640))
        result = session.process(frame)
    assert result.alpha.shape == (360, 640)
    assert ratios == [0.5, 0.5, 0.375, 0.375] and session.adaptive.changes == 1
    # The state was restarted at the new size: r1 is half the 240x128 network input.
    assert tuple(session.state[0].shape[2:]) == (64, 120)


async def test_live_pipeline_sessions_adapt_to_the_configured_budget(runtime, clip, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from fractions import Fraction

    from matting.compositing import Background
    from server.live.config import LiveConfig
    from server.live.pipeline import LivePipeline

    frame = av.VideoFrame.from_ndarray(clip[0][0], format="rgb24")
    frame.pts, frame.time_base = 0, Fraction(1, 30)
    budget = LiveConfig().matte_budget_ms
    assert budget > 0  # live sessions adapt by default
    executor = ThreadPoolExecutor(1)
    try:
        pipeline = LivePipeline(runtime, executor, Background("color", color=(0, 177, 64)),
                                recordings_dir=tmp_path, name="budget", matte_budget_ms=budget)
        out = await pipeline.process(frame)
        fixed = LivePipeline(runtime, executor, Background("color"), recordings_dir=tmp_path,
                             name="fixed", downsample_ratio=0.5, matte_budget_ms=budget)
        await fixed.process(frame)
    finally:
        executor.shutdown()
    assert (out.width, out.height) == (512, 288)
    assert pipeline._session.adaptive.budget_ms == budget
    assert fixed._session.adaptive is None and fixed._session.ratio_for(288, 512) == 0.5


def test_a_smaller_budget_moves_the_ratio_down_and_a_larger_one_lifts_the_back_off():
    controller = AdaptiveRatio(budget_ms=45, start_ratio=0.5, hold_frames=30, backoff_frames=300, fixed_ms=10)
    # 300 ms per MP: 0.5 takes 33 ms, fine alone; a lane shared three ways gives 25 ms
    assert set(simulate(controller, 60, ms_per_megapixel=300, fixed_ms=10)) == {0.5}
    controller.set_budget(25)
    assert simulate(controller, 60, ms_per_megapixel=300, fixed_ms=10)[-1] == 0.375
    # the others leave: back up within a hold, not after the 300-frame back-off
    controller.set_budget(45)
    assert simulate(controller, 40, ms_per_megapixel=300, fixed_ms=10)[-1] == 0.5
    with pytest.raises(ValueError):
        controller.set_budget(0)


async def test_live_pipeline_budget_shrinks_to_its_share_of_a_shared_lane(runtime, clip, tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    from fractions import Fraction

    from matting.compositing import Background
    from server.capacity import Capacity
    from server.live.pipeline import LivePipeline

    frames = []
    for i, rgb in enumerate(clip[0][:6]):
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 30)
        frames.append(frame)
    capacity = Capacity(target_fps=15, workers=1)
    executor = ThreadPoolExecutor(1)
    try:
        pipeline = LivePipeline(runtime, executor, Background("blur"), recordings_dir=tmp_path, name="share",
                                matte_budget_ms=45.0, capacity=capacity)
        capacity.admit("share")
        for frame in frames[:3]:
            await pipeline.process(frame)
        assert pipeline._session.adaptive.budget_ms == 45.0  # alone: the lane gives it 66 ms a frame
        capacity.admit("other", force=True)
        capacity.admit("third", force=True)
        for frame in frames[3:]:
            await pipeline.process(frame)
    finally:
        executor.shutdown()
    # three streams on one worker at 15 fps: 22 ms a frame, less the work around the network
    assert 1.0 <= pipeline._session.adaptive.budget_ms < 1000 / (3 * 15)
    assert capacity.report().frame_cost_ms > 0  # frames after the first few are charged
