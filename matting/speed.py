"""Choosing RVM's internal resolution from a time budget.

RVM's cost is almost all in the encoder/decoder, which runs on the downsampled frame, so
a frame costs about ``fixed_ms + ms_per_megapixel * network megapixels`` (the fixed part
is the full-resolution resize, refiner and copies). :func:`choose_downsample_ratio`
picks the largest ratio that fits a budget; :class:`AdaptiveRatio` learns the cost from
the frames it times and moves the ratio when the machine gets busier or quieter.
"""
from __future__ import annotations

from dataclasses import dataclass

from matting.rvm.network import network_size

# Ratios a live stream may use, in eighths so that network sizes stay round.
LADDER = (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
# Below ~240 px on the long side quality falls fast (the network misses arms and hair
# and makes holes): at 640x480, 240 px gives MAD 6.6, 160 px MAD 18 (bench/README.md).
MIN_NETWORK_SIDE = 240
# Above 512 px the authors' guidance (and matting.session.auto_downsample_ratio) says
# quality does not improve, so spare time is not spent there.
MAX_NETWORK_SIDE = 512


def network_megapixels(height: int, width: int, ratio: float) -> float:
    h, w = network_size(height, width, ratio)
    return h * w / 1e6


def usable_ratios(height: int, width: int, ladder: tuple[float, ...] = LADDER) -> list[float]:
    """The ladder's ratios (ascending) that give the network MIN_NETWORK_SIDE to
    MAX_NETWORK_SIDE px on the long side; for frames outside that range, the one ratio
    that comes closest."""
    long_side = max(height, width)
    ratios = sorted(r for r in ladder if MIN_NETWORK_SIDE <= r * long_side <= MAX_NETWORK_SIDE and r <= 1)
    return ratios or [1.0 if long_side <= MAX_NETWORK_SIDE else MAX_NETWORK_SIDE / long_side]


def choose_downsample_ratio(height: int, width: int, budget_ms: float, ms_per_megapixel: float,
                            fixed_ms: float = 0.0, ladder: tuple[float, ...] = LADDER) -> float:
    """The largest usable ratio whose predicted time fits ``budget_ms`` (else the smallest)."""
    ratios = usable_ratios(height, width, ladder)
    fitting = [r for r in ratios
               if fixed_ms + ms_per_megapixel * network_megapixels(height, width, r) <= budget_ms]
    return fitting[-1] if fitting else ratios[0]


@dataclass
class AdaptiveRatio:
    """Keeps one stream's frame time under ``budget_ms`` by moving its downsample ratio.

    Feed every frame's time to :meth:`observe`; read :meth:`ratio_for`. A ratio change
    resets the stream's recurrent state (its shapes follow the network size), which costs
    a few frames of temporal stability, so changes are rare: down only after frames have
    run over budget on average, up only when the next ratio up is predicted to fit with
    ``headroom`` to spare, never within ``hold_frames`` of the last change, and not back
    above a ratio that ran over budget for ``backoff_frames``.
    """

    budget_ms: float
    start_ratio: float = 0.5
    hold_frames: int = 30
    backoff_frames: int = 300
    headroom: float = 0.8
    smoothing: float = 0.2       # weight of the newest frame in the running averages
    fixed_ms: float = 0.0        # full-resolution cost not scaled by the ratio

    def __post_init__(self):
        if self.budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive, not {self.budget_ms}")
        self.ratio = self.start_ratio
        self.ms_per_megapixel: float | None = None
        self.average_ms: float | None = None
        self.changes = 0
        self._since_change = 0
        self._ceiling = 1.0
        self._ceiling_left = 0

    def set_budget(self, budget_ms: float) -> None:
        """A new budget (e.g. the stream's share of a lane that others joined or left).
        A larger one lifts the back-off: it held the ratio below one that ran over the old budget."""
        if budget_ms <= 0:
            raise ValueError(f"budget_ms must be positive, not {budget_ms}")
        if budget_ms > self.budget_ms:
            self._ceiling_left = 0
        self.budget_ms = budget_ms

    def ratio_for(self, height: int, width: int) -> float:
        ratios = usable_ratios(height, width)
        if self.ratio not in ratios:  # first frame, or a new frame size
            self.ratio = max([r for r in ratios if r <= self.ratio], default=ratios[0])
        return self.ratio

    def observe(self, elapsed_ms: float, height: int, width: int) -> None:
        """Record the time of a frame run at ``self.ratio``; may change the ratio."""
        a = self.smoothing
        per_mp = max(elapsed_ms - self.fixed_ms, 0.0) / max(network_megapixels(height, width, self.ratio), 1e-6)
        self.ms_per_megapixel = (per_mp if self.ms_per_megapixel is None
                                 else (1 - a) * self.ms_per_megapixel + a * per_mp)
        self.average_ms = elapsed_ms if self.average_ms is None else (1 - a) * self.average_ms + a * elapsed_ms
        self._since_change += 1
        self._ceiling_left -= 1
        if self._since_change < self.hold_frames:
            return
        ratios = usable_ratios(height, width)
        i = ratios.index(self.ratio_for(height, width))
        if self.average_ms > self.budget_ms and i > 0:
            self._move(choose_downsample_ratio(height, width, self.budget_ms, self.ms_per_megapixel,
                                               self.fixed_ms, ladder=tuple(ratios[:i])))
        elif i + 1 < len(ratios) and (ratios[i + 1] <= self._ceiling or self._ceiling_left <= 0):
            predicted = self.fixed_ms + self.ms_per_megapixel * network_megapixels(height, width, ratios[i + 1])
            if predicted <= self.headroom * self.budget_ms:
                self._move(ratios[i + 1])

    def _move(self, ratio: float) -> None:
        if ratio < self.ratio:
            self._ceiling, self._ceiling_left = ratio, self.backoff_frames
        self.ratio = ratio
        self.changes += 1
        self._since_change = 0
        # The averages describe the old ratio; the per-megapixel cost carries over.
        self.average_ms = None

