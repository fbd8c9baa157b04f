"""The capacity model on its own: cost scaled to the adaptive floor, admission, release."""
from __future__ import annotations

import math

import pytest

from matting.speed import network_megapixels, usable_ratios
from server.capacity import FULL_LANE_MEMORY_S, Capacity, FrameCost
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


def test_a_lone_frame_is_charged_what_it_would_cost_in_a_full_lane():
    # Alone a frame takes 40 ms; two side by side take 50 ms each (the two workers carry
    # 1.6x the frames of one). Both ways the charge is 25 ms and the capacity 1000 / (25 * 15) = 2,
    # where without the measured speedup one stream's frames alone said 40 ms: capacity 1.
    clock = FakeClock()
    alone, full = (Capacity(target_fps=15, workers=2, clock=clock) for _ in range(2))
    unmeasured = Capacity(target_fps=15, workers=2, clock=clock)
    alone.set_speedup(1.6)
    full.set_speedup(1.6)
    for _ in range(50):
        entered = alone.enter_lane(), unmeasured.enter_lane()
        clock.now += 0.040
        alone.observe(FrameCost(40.0 * alone.leave_lane(entered[0]), 0.0, 480, 640, 0.375))
        unmeasured.observe(FrameCost(40.0 * unmeasured.leave_lane(entered[1]), 0.0, 480, 640, 0.375))
        a, b = full.enter_lane(), full.enter_lane()
        clock.now += 0.050
        for entered_full in (a, b):
            full.observe(FrameCost(50.0 * full.leave_lane(entered_full), 0.0, 480, 640, 0.375))
    assert alone.report().frame_cost_ms == pytest.approx(25.0)
    assert full.report().frame_cost_ms == pytest.approx(25.0)
    assert alone.capacity() == full.capacity() == 2
    assert unmeasured.report().frame_cost_ms == pytest.approx(40.0) and unmeasured.capacity() == 1
    assert alone.report().lane_speedup == 1.6 and unmeasured.report().lane_speedup == 1.0


def test_the_speedup_is_bounded_by_the_workers_and_means_nothing_to_one():
    capacity = Capacity(target_fps=15, workers=2)
    capacity.set_speedup(3.0)
    assert capacity.speedup == 2.0
    capacity.set_speedup(0.7)  # side by side slower than one after another: no gain, no loss
    assert capacity.speedup == 1.0
    clock = FakeClock()
    single = Capacity(target_fps=15, workers=1, clock=clock)
    single.set_speedup(1.8)
    entered = single.enter_lane()
    clock.now += 0.040
    assert single.leave_lane(entered) == 1.0


def test_frames_between_one_and_every_worker_are_charged_their_share_of_the_gain():
    # Four workers that carry 3x one: a lone frame is charged 1/3, four side by side 1/4
    # each; in between the gain is taken to grow linearly (2 frames: 5/3x, 3 frames: 7/3x),
    # so each of k frames is charged gain / (k * 3).
    clock = FakeClock()
    capacity = Capacity(target_fps=15, workers=4, clock=clock)
    capacity.set_speedup(3.0)
    for count, share in ((1, 1 / 3), (2, 5 / 18), (3, 7 / 27), (4, 1 / 4)):
        entered = [capacity.enter_lane() for _ in range(count)]
        clock.now += 0.030
        assert [capacity.leave_lane(e) for e in entered][0] == pytest.approx(share)


def test_a_speedup_predicts_no_more_streams_than_workers_until_the_lane_was_full():
    # A lone stream at 20 ms a frame with a 1.8x lane: charged 11.1 ms, which alone would
    # say 6 streams at 15 fps; it says 2 (the workers) until two frames ran side by side.
    clock = FakeClock()
    capacity = Capacity(target_fps=15, workers=2, clock=clock)
    capacity.set_speedup(1.8)
    for _ in range(20):
        entered = capacity.enter_lane()
        clock.now += 0.020
        capacity.observe(FrameCost(20.0 * capacity.leave_lane(entered), 0.0, 480, 640, 0.375))
    assert capacity.report().frame_cost_ms == pytest.approx(20.0 / 1.8, abs=0.01)
    assert capacity.capacity() == 2
    a, b = capacity.enter_lane(), capacity.enter_lane()
    clock.now += 0.022
    for entered in (a, b):
        capacity.observe(FrameCost(22.0 * capacity.leave_lane(entered), 0.0, 480, 640, 0.375))
    assert capacity.capacity() == math.floor(1000 / (capacity.report().frame_cost_ms * 15)) > 2
    clock.now += FULL_LANE_MEMORY_S + 1  # a full lane long ago says nothing of now
    assert capacity.capacity() == 2
