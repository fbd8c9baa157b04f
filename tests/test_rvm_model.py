"""RVM network, loader and per-stream session, on the real checkpoint and real frames."""
from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from matting import weights
from matting.rvm import MattingNetwork, load_rvm
from matting.rvm.network import network_size
from matting.session import VideoMattingSession, auto_downsample_ratio, step
from matting.weights import CheckpointError

CLIP = "temporal/p3m_00a7a27c_porch_512x288/com.mkv"


@pytest.fixture(scope="module")
def rvm_path() -> Path:
    return weights.resolve("rvm", download=False)


@pytest.fixture(scope="module")
def state_dict(rvm_path):
    return torch.load(rvm_path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def model(runtime):
    return runtime.video_model()


@pytest.fixture(scope="module")
def frames(media) -> list[np.ndarray]:
    """Three consecutive real frames, shrunk to 256x144 for speed."""
    with av.open(str(media / CLIP)) as container:
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(3), container.decode(video=0), strict=False)]
    return [np.array(Image.fromarray(f).resize((256, 144), Image.BILINEAR)) for f in decoded]


def test_real_checkpoint_loads_strictly_with_official_layout(model, state_dict):
    assert isinstance(model, MattingNetwork) and not model.training
    # Same keys, order and shapes as the official MattingNetwork('mobilenetv3').
    reference = MattingNetwork("deep_guided_filter").state_dict()
    assert list(reference) == list(state_dict)
    assert all(reference[k].shape == v.shape for k, v in state_dict.items())
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state_dict[k]) for k in loaded)


def test_auto_refiner_uses_fast_guided_filter_for_neutral_refiner(rvm_path, caplog):
    with caplog.at_level(logging.INFO, logger="matting.rvm.loading"):
        model = load_rvm(rvm_path, device="cpu", dtype=torch.float32)
    assert model.refiner_name == "fast_guided_filter"
    assert "fast_guided_filter" in caplog.text and "untrained" in caplog.text
    assert not any(k.startswith("refiner.") for k in model.state_dict())


def test_auto_refiner_keeps_a_trained_deep_guided_filter(state_dict, tmp_path):
    trained = dict(state_dict)
    trained["refiner.conv.6.weight"] = torch.full_like(trained["refiner.conv.6.weight"], 0.01)
    torch.save(trained, tmp_path / "trained.pth")
    model = load_rvm(tmp_path / "trained.pth", device="cpu", dtype=torch.float32)
    assert model.refiner_name == "deep_guided_filter"
    assert torch.equal(model.state_dict()["refiner.conv.6.weight"], trained["refiner.conv.6.weight"])


def test_explicit_refiner_choice(rvm_path):
    assert load_rvm(rvm_path, refiner="deep_guided_filter").refiner_name == "deep_guided_filter"
    assert load_rvm(rvm_path, refiner="fast_guided_filter").refiner_name == "fast_guided_filter"
    with pytest.raises(ValueError, match="refiner"):
        load_rvm(rvm_path, refiner="bicubic")


def _truncated(src: Path, dst: Path, state) -> None:
    dst.write_bytes(src.read_bytes()[: 4 << 20])


def _random_bytes(src: Path, dst: Path, state) -> None:
    dst.write_bytes(np.random.default_rng(0).bytes(100_000))


def _text(src: Path, dst: Path, state) -> None:
    dst.write_text("<html>404 Not Found</html>")


def _wrong_shape(src: Path, dst: Path, state) -> None:
    bad = dict(state)
    bad["decoder.decode3.conv.0.weight"] = torch.zeros(80, 170, 3, 3)
    torch.save(bad, dst)


def _missing_key(src: Path, dst: Path, state) -> None:
    torch.save({k: v for k, v in state.items() if k != "project_mat.conv.bias"}, dst)


def _unexpected_key(src: Path, dst: Path, state) -> None:
    torch.save({**state, "extra.weight": torch.zeros(1)}, dst)


def _not_a_state_dict(src: Path, dst: Path, state) -> None:
    torch.save([torch.zeros(3)], dst)


@pytest.mark.parametrize("make, expected", [
    (_truncated, "truncated, corrupt"),
    (_random_bytes, "truncated, corrupt"),
    (_text, "truncated, corrupt"),
    (_wrong_shape, "1 wrong shapes: decoder.decode3.conv.0.weight (80, 170, 3, 3) in file, (80, 171, 3, 3) expected"),
    (_missing_key, "1 missing keys: project_mat.conv.bias"),
    (_unexpected_key, "1 unexpected keys: extra.weight"),
    (_not_a_state_dict, "holds a list, not a state dict"),
])
def test_bad_checkpoints_raise_clear_errors(make, expected, rvm_path, state_dict, tmp_path):
    bad = tmp_path / "rvm_mobilenetv3.pth"
    make(rvm_path, bad, state_dict)
    with pytest.raises(CheckpointError) as info:
        load_rvm(bad, device="cpu", dtype=torch.float32)
    message = str(info.value)
    print(f"\n{make.__name__}: {message}")
    assert expected in message and str(bad) in message
    assert "Copy rvm_mobilenetv3.pth into one of" in message  # says what to put where


def test_missing_checkpoint_says_where_to_put_it(tmp_path):
    with pytest.raises(CheckpointError, match=r"does not exist\. .*Copy rvm_mobilenetv3\.pth into one of"):
        load_rvm(tmp_path / "nowhere.pth")


@pytest.mark.parametrize("ratio", [1.0, 0.5])
def test_forward_shapes_and_ranges_on_odd_sizes(model, frames, ratio):
    src = torch.from_numpy(frames[0][:101, :67]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        fgr, pha, *rec = model(src, downsample_ratio=ratio)
    assert fgr.shape == (1, 3, 101, 67) and pha.shape == (1, 1, 101, 67)
    assert 0 <= pha.min() and pha.max() <= 1 and 0 <= fgr.min() and fgr.max() <= 1
    small = network_size(101, 67, ratio)
    expected = [(16, 2), (20, 4), (40, 8), (64, 16)]  # GRU channels and stride of r1..r4
    for r, (channels, stride) in zip(rec, expected, strict=False):
        assert r.shape == (1, channels, -(-small[0] // stride), -(-small[1] // stride))


def test_none_state_means_zeros(model, frames):
    src = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        _, pha, *rec = model(src)
        _, pha_zeros, *_ = model(src, *[torch.zeros_like(r) for r in rec])
    assert torch.equal(pha, pha_zeros)


def test_segmentation_head_agrees_with_alpha(model, frames):
    # The stand-in's project_seg is 8 x (alpha row - 0.5): same decision as alpha > 0.5.
    src = torch.from_numpy(frames[0]).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        _, pha, *_ = model(src)
        seg, *_ = model(src, segmentation_pass=True)
    agree = ((seg > 0) == (pha > 0.5)).float().mean().item()
    assert agree > 0.999 and 0.1 < (pha > 0.5).float().mean() < 0.9


@pytest.mark.parametrize("size, ratio", [
    ((288, 512), 1.0), ((480, 640), 0.75), ((720, 1280), 0.375), ((1080, 1920), 0.25),
    ((2160, 3840), 0.125)])
def test_auto_downsample_ratio_follows_authors_table(size, ratio):
    assert auto_downsample_ratio(*size) == ratio


@pytest.mark.parametrize("long_side", [513, 700, 1000, 1600, 2500, 4096, 5000, 8000])
def test_auto_downsample_ratio_keeps_network_input_256_to_512(long_side):
    assert 256 <= auto_downsample_ratio(long_side // 2, long_side) * long_side <= 512


def test_session_carries_state(model, frames):
    carried = VideoMattingSession(model)
    carried.process(frames[0])
    second = carried.process(frames[1]).alpha
    fresh = VideoMattingSession(model).process(frames[1]).alpha
    difference = np.abs(second - fresh).mean()
    print(f"\nsecond frame, carried vs fresh state: mean |d alpha| = {difference:.2e}")
    assert difference > 1e-4
    assert carried.frames_processed == 2 and all(r is not None for r in carried.state)
    carried.reset()
    assert np.array_equal(carried.process(frames[1]).alpha, fresh)


def test_session_resets_on_resolution_change(model, frames):
    session = VideoMattingSession(model)
    session.process(frames[0])
    session.process(frames[1])
    smaller = np.ascontiguousarray(frames[2][:120, :200])
    result = session.process(smaller)
    assert result.alpha.shape == (120, 200) and result.foreground.shape == (120, 200, 3)
    assert np.array_equal(result.alpha, VideoMattingSession(model).process(smaller).alpha)
    assert session.frames_processed == 3


def test_sessions_sharing_a_model_do_not_interfere(model, frames):
    alone = VideoMattingSession(model)
    expected = [alone.process(f).alpha for f in frames]
    a, b = VideoMattingSession(model), VideoMattingSession(model)
    got = []
    for f in frames:
        got.append(a.process(f).alpha)
        b.process(np.ascontiguousarray(f[::-1]))  # another stream in between
    assert all(np.array_equal(x, y) for x, y in zip(got, expected, strict=False))


def test_step_batches_streams(model, frames):
    def tensor(frame):
        return torch.from_numpy(frame).permute(2, 0, 1)[None].float() / 255

    _, _, state_a = step(model, tensor(frames[0]), (None,) * 4, 0.5)
    _, _, state_b = step(model, tensor(frames[2]), (None,) * 4, 0.5)
    _, pha_a, _ = step(model, tensor(frames[1]), state_a, 0.5)
    _, pha_b, _ = step(model, tensor(frames[0]), state_b, 0.5)
    batch = torch.cat([tensor(frames[1]), tensor(frames[0])])
    stacked = tuple(torch.cat([ra, rb]) for ra, rb in zip(state_a, state_b, strict=False))
    _, pha, _ = step(model, batch, stacked, 0.5)
    assert torch.allclose(pha, torch.cat([pha_a, pha_b]), atol=1e-4)


def test_session_rejects_bad_input(model):
    session = VideoMattingSession(model)
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        session.process(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        session.process(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match="downsample_ratio"):
        VideoMattingSession(model, downsample_ratio=1.5)
    assert session.frames_processed == 0


def test_half_precision_tracks_float32(rvm_path, model, frames):
    # fp16 is the CUDA path; torch's CPU kernels run it too, which checks the dtype handling
    # (states, normalisation buffers, the guided filter's fp32 statistics) without a GPU.
    half = load_rvm(rvm_path, device="cpu", dtype=torch.float16)
    sessions = VideoMattingSession(half, 0.5), VideoMattingSession(model, 0.5)
    for frame in frames[:2]:
        got, expected = (s.process(frame) for s in sessions)
    assert got.alpha.dtype == np.float32 and all(r.dtype == torch.float16 for r in sessions[0].state)
    error = np.abs(got.alpha - expected.alpha)
    print(f"\nfp16 vs fp32 alpha, second frame: max {error.max():.2e}, mean {error.mean():.2e}")
    assert error.mean() < 1e-3 and error.max() < 0.1
