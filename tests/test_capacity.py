"""The capacity model on its own: cost scaled to the adaptive floor, admission, release."""
from __future__ import annotations

import pytest

from matting.speed import network_megapixels, usable_ratios
from server.capacity import Capacity, FrameCost
from server.errors import ApiError


def test_cost_is_scaled_to_the_adaptive_floor():
    floor = usable_ratios(480, 640)[0]
    cost = FrameCost(total_ms=50.0, network_ms=40.0, height=480, width=640, ratio=0.75)
    share = network_megapixels(480, 640, floor) / network_megapixels(480, 640, 0.75)
    assert cost.at_floor_ms() == pytest.approx(10.0 + 40.0 * share)
    assert FrameCost(50.0, 40.0, 480, 640, floor).at_floor_ms() == pytest.approx(50.0)


def test_admits_while_every_stream_keeps_the_target_and_releases():
    capacity = Capacity(target_fps=15, workers=1)
    capacity.admit("a")
    capacity.admit("b")  # no cost measured yet: nothing to refuse on
    capacity.release("b")
    capacity.calibrate(FrameCost(30.0, 0.0, 480, 640, 0.5))  # 30 ms a frame: 2 streams at 15 fps
    assert capacity.report().capacity == 2 and capacity.report().headroom == 1
    capacity.admit("b")
    with pytest.raises(ApiError) as refused:
        capacity.admit("c")
    assert refused.value.status == 503 and refused.value.headers["Retry-After"]
    assert refused.value.extra["capacity"]["admitted"] == 2 and refused.value.extra["capacity"]["headroom"] == 0
    capacity.admit("c", force=True)  # a restored stream is never lost
    capacity.release("a")
    capacity.release("c")
    capacity.admit("d")
    assert capacity.rejected_total == 1


def test_one_stream_is_always_admitted_and_the_ceiling_caps():
    slow = Capacity(target_fps=30, workers=1)
    slow.calibrate(FrameCost(500.0, 0.0, 480, 640, 0.5))
    slow.admit("only")
    assert slow.report().capacity == 1
    capped = Capacity(target_fps=15, workers=4, ceiling=1)
    capped.calibrate(FrameCost(1.0, 0.0, 480, 640, 0.5))
    capped.admit("a")
    with pytest.raises(ApiError, match="limit of 1 live session"):
        capped.admit("b")


def test_measured_frames_replace_the_start_up_estimate():
    capacity = Capacity(target_fps=15, workers=1)
    capacity.calibrate(FrameCost(200.0, 0.0, 480, 640, 0.5))
    for _ in range(20):
        capacity.observe(FrameCost(20.0, 0.0, 480, 640, 0.5))
    assert capacity.report().frame_cost_ms < 35.0


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_frames_side_by_side_are_charged_their_share_of_the_lane():
    clock = FakeClock()
    capacity = Capacity(target_fps=15, workers=2, clock=clock)
    alone = capacity.enter_lane()
    clock.now += 0.040
    charged = [0.040 * capacity.leave_lane(alone)]
    assert charged[-1] == pytest.approx(0.040)
    # a and b together for 40 ms: half each; then c beside a for 40 ms; then c alone 40 ms
    a, b = capacity.enter_lane(), capacity.enter_lane()
    clock.now += 0.040
    charged.append(0.040 * capacity.leave_lane(b))
    assert charged[-1] == pytest.approx(0.020)
    c = capacity.enter_lane()
    clock.now += 0.040
    charged.append(0.080 * capacity.leave_lane(a))
    assert charged[-1] == pytest.approx(0.040)
    clock.now += 0.040
    charged.append(0.080 * capacity.leave_lane(c))
    assert charged[-1] == pytest.approx(0.060)
    # the charges add up to the time the lane was busy: 40 ms, then 120 ms
    assert sum(charged) == pytest.approx(0.160)
    assert capacity.leave_lane(capacity.enter_lane()) == 1.0  # no time at all: charged whole


def test_a_lane_shared_side_by_side_counts_what_it_really_gains():
    # Two workers that each take 40 ms a frame side by side (a shared 2-core CPU) carry
    # 50 frames/s, not 2 x 25: the charge is 20 ms and the capacity 1000 / (20 * 15) = 3.
    clock = FakeClock()
    capacity = Capacity(target_fps=15, workers=2, clock=clock)
    for _ in range(100):
        a, b = capacity.enter_lane(), capacity.enter_lane()
        clock.now += 0.040
        for entered in (a, b):
            capacity.observe(FrameCost(40.0 * capacity.leave_lane(entered), 0.0, 480, 640, 0.375))
    assert capacity.report().frame_cost_ms == pytest.approx(20.0)
    assert capacity.capacity() == 3


def test_a_streams_share_of_the_lane_shrinks_as_others_join():
    capacity = Capacity(target_fps=15, workers=2)
    assert capacity.lane_share_ms() == pytest.approx(1000 / 15)  # a stream has one worker at most
    capacity.admit("a")
    capacity.admit("b")
    assert capacity.lane_share_ms() == pytest.approx(1000 / 15)
    capacity.admit("c", force=True)
    assert capacity.lane_share_ms() == pytest.approx(2 * 1000 / (3 * 15))
    single = Capacity(target_fps=15, workers=1)
    single.admit("a")
    single.admit("b")
    assert single.lane_share_ms() == pytest.approx(1000 / 30)
