"""Settings for server.live (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class LiveConfig:
    target_fps: float = setting(0.0, "ABRAR_LIVE_TARGET_FPS",
                                "admit a new live session or RTSP stream only while every admitted one can keep "
                                "this rate at the smallest adaptive size; else 503 "
                                "(0 = auto: 15 on a CPU, 30 on a GPU)")
    max_sessions: int = setting(0, "ABRAR_LIVE_MAX_SESSIONS",
                                "optional ceiling on live sessions and streams at once, on top of the capacity "
                                "rule (0 = none)")
    idle_timeout_s: float = setting(5.0, "ABRAR_LIVE_IDLE_TIMEOUT",
                                    "close a session after this many seconds without a video frame "
                                    "(a killed browser or a lost network), finalising its recording")
    connect_timeout_s: float = setting(10.0, "ABRAR_LIVE_CONNECT_TIMEOUT",
                                       "close a session whose peer has not connected within this many seconds, "
                                       "so an offer that never connects stops holding capacity")
    default_background: str = setting("blur", "ABRAR_LIVE_BACKGROUND",
                                      "background of new sessions: transparent, green, #rrggbb, blur, blur:N")
    downsample_ratio: float | None = setting(None, "ABRAR_LIVE_DOWNSAMPLE_RATIO",
                                             "RVM internal scale for live video (default: adapted to "
                                             "ABRAR_LIVE_MATTE_BUDGET_MS)")
    matte_budget_ms: float = setting(45.0, "ABRAR_LIVE_MATTE_BUDGET_MS",
                                     "without a fixed ratio, each live session and RTSP stream adapts its RVM internal "
                                     "scale (240-512 px) to matte a frame in about this many ms, or in its share "
                                     "of the live threads when streams share them; 0: the fixed 256-512 px auto ratio")
    max_background_bytes: int = setting(10_000_000, "ABRAR_LIVE_MAX_BACKGROUND_BYTES",
                                        "largest background image upload in bytes")

    def __post_init__(self):
        problems = []
        if self.max_sessions < 0:
            problems.append(f"ABRAR_LIVE_MAX_SESSIONS must be 0 (no ceiling) or more, not {self.max_sessions}")
        if self.target_fps < 0:
            problems.append(f"ABRAR_LIVE_TARGET_FPS must be 0 (auto) or more, not {self.target_fps}")
        for env, value in (("ABRAR_LIVE_IDLE_TIMEOUT", self.idle_timeout_s),
                           ("ABRAR_LIVE_CONNECT_TIMEOUT", self.connect_timeout_s)):
            if not value > 0:
                problems.append(f"{env} must be above 0 seconds, not {value}")
        if self.downsample_ratio is not None and not 0 < self.downsample_ratio <= 1:
            problems.append(f"ABRAR_LIVE_DOWNSAMPLE_RATIO must be in (0, 1], not {self.downsample_ratio}")
        if self.matte_budget_ms < 0:
            problems.append(f"ABRAR_LIVE_MATTE_BUDGET_MS must not be negative, not {self.matte_budget_ms}")
        if self.max_background_bytes < 1:
            problems.append(f"ABRAR_LIVE_MAX_BACKGROUND_BYTES must be positive, not {self.max_background_bytes}")
        if problems:
            raise ValueError("; ".join(problems))
