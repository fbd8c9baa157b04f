"""aiortc's senders get audio levels from numpy, equal to aiortc's own loop."""
from __future__ import annotations

import importlib.util
import math

import av
import numpy as np
import pytest
from aiortc import rtp

from server.live.audio_level import audio_level_dbov, use_numpy_levels


def _aiortc_original():
    """A fresh copy of aiortc's rtp module: its function, whatever was patched since."""
    spec = importlib.util.spec_from_file_location("aiortc.rtp_original", rtp.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.compute_audio_level_dbov


def _frame(samples: np.ndarray, layout: str) -> av.AudioFrame:
    frame = av.AudioFrame.from_ndarray(samples.astype(np.int16).reshape(1, -1), format="s16", layout=layout)
    frame.sample_rate = 48000
    return frame


def _frames() -> list[av.AudioFrame]:
    rng = np.random.default_rng(7)
    t = np.arange(960) / 48000
    tone = 32767 * np.sin(2 * math.pi * 440 * t)
    return [
        _frame(np.zeros(960), "mono"),
        _frame(np.full(1920, -32768), "stereo"),
        _frame(tone, "mono"),
        _frame(tone * 1e-3, "mono"),
        _frame(rng.integers(-32768, 32768, 1920), "stereo"),
        _frame(rng.integers(-3, 4, 960), "mono"),
    ]


@pytest.mark.parametrize("index", range(6))
def test_levels_equal_aiortcs_own(index):
    frame = _frames()[index]
    assert audio_level_dbov(frame) == _aiortc_original()(frame)


def test_levels_span_silence_to_full_scale():
    levels = [audio_level_dbov(f) for f in _frames()]
    assert levels[0] == -127 and levels[1] == 0
    assert levels[2] == -3  # a full-scale sine is 3 dB below a full-scale square


def test_the_app_makes_aiortcs_senders_use_it(tmp_path):
    from server.app import create_app
    from server.config import ServerConfig

    rtp.compute_audio_level_dbov = _aiortc_original()
    create_app(ServerConfig(data_dir=tmp_path / "data", recordings_dir=tmp_path / "rec"))
    # RTCRtpSender looks the function up on the module for every frame it sends
    assert rtp.compute_audio_level_dbov is audio_level_dbov
    assert use_numpy_levels()
