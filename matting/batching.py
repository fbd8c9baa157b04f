"""Cross-session batching: frames of many streams that share a frame size and downsample
ratio run through RVM as one batch, each with its own recurrent state.

On a GPU one forward pass of B frames costs far less than B passes, so this is what lets
one card serve many streams. On a CPU the work per frame is the same either way, so it
is off by default there (see bench/bench_batching.py).

Each stream calls :meth:`FrameBatcher.step` from its own thread and blocks until its
batch has run; a batch goes as soon as it is full or the oldest frame in it has waited
``window_ms``. The network holds no per-stream state, so rows of a batch never mix.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from matting.session import RecurrentState, step

# (height, width, downsample_ratio): frames that can share a forward pass.
GroupKey = tuple[int, int, float]


@dataclass
class _Request:
    src: Tensor
    state: RecurrentState
    future: Future = field(default_factory=Future)


@dataclass
class _Group:
    opened_at: float
    requests: list[_Request] = field(default_factory=list)


@dataclass
class BatchStats:
    batches: int = 0
    frames: int = 0
    largest: int = 0

    @property
    def mean_batch(self) -> float:
        return self.frames / self.batches if self.batches else 0.0


class FrameBatcher:
    """Runs ``model`` on batches gathered from many sessions, in one worker thread.

    ``max_batch``: most frames per forward pass. ``window_ms``: longest a frame waits for
    others to join (the latency a lone stream pays). Thread-safe; ``close()`` when done.
    """

    def __init__(self, model: nn.Module, *, max_batch: int = 8, window_ms: float = 5.0):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        if window_ms < 0:
            raise ValueError(f"window_ms must not be negative, not {window_ms}")
        self.model = model
        self.max_batch = max_batch
        self.window_s = window_ms / 1000
        self.stats = BatchStats()
        self._groups: OrderedDict[GroupKey, _Group] = OrderedDict()
        self._cond = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._run, name="rvm-batcher", daemon=True)
        self._worker.start()

    def step(self, src: Tensor, state: RecurrentState, downsample_ratio: float
             ) -> tuple[Tensor, Tensor, RecurrentState]:
        """Like :func:`matting.session.step` for one frame ``src`` [1, 3, H, W]; blocks
        until the batch holding it has run. Exceptions of the forward pass are re-raised
        here, in every caller of that batch."""
        if src.ndim != 4 or src.shape[0] != 1:
            raise ValueError(f"step takes one frame [1, 3, H, W], not {list(src.shape)}")
        request = _Request(src, state)
        key = (src.shape[2], src.shape[3], float(downsample_ratio))
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            group = self._groups.get(key)
            if group is None:
                group = self._groups[key] = _Group(time.monotonic())
            group.requests.append(request)
            self._cond.notify()
        return request.future.result()

    def close(self) -> None:
        """Run what is queued, then stop the worker. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._worker.join()

    def _run(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
                if batch is None:
                    return
            key, requests = batch
            self._forward(key[2], requests)

    def _next_batch(self) -> tuple[GroupKey, list[_Request]] | None:
        """Wait (holding the condition) until some group is due; None once closed and empty."""
        while True:
            now = time.monotonic()
            due = [(key, g) for key, g in self._groups.items()
                   if self._closed or len(g.requests) >= self.max_batch
                   or now - g.opened_at >= self.window_s]
            if due:
                key, group = due[0]
                taken, rest = group.requests[:self.max_batch], group.requests[self.max_batch:]
                if rest:
                    group.requests = rest  # the overflow starts its own window now
                    group.opened_at = now
                else:
                    del self._groups[key]
                return key, taken
            if self._closed:
                return None
            if self._groups:
                oldest = min(g.opened_at for g in self._groups.values())
                self._cond.wait(max(0.0, oldest + self.window_s - now))
            else:
                self._cond.wait()

    def _forward(self, ratio: float, requests: list[_Request]) -> None:
        try:
            src = torch.cat([r.src for r in requests])
            fgr, pha, state = step(self.model, src, stack_states([r.state for r in requests]), ratio)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            for r in requests:
                r.future.set_exception(exc)
            return
        self.stats.batches += 1
        self.stats.frames += len(requests)
        self.stats.largest = max(self.stats.largest, len(requests))
        for i, r in enumerate(requests):
            own = tuple(None if s is None else s[i:i + 1] for s in state)  # (never None after a step)
            r.future.set_result((fgr[i:i + 1], pha[i:i + 1], own))


def stack_states(states: list[RecurrentState]) -> RecurrentState:
    """Stack per-stream states along the batch. Streams on their first frame (None) get
    zeros, which is what the network uses for None; all None stays None."""
    known = next((s for s in states if s[0] is not None), None)
    if known is None:
        return (None, None, None, None)
    stacked: list[Tensor] = []
    for i, like in enumerate(known):
        if like is None:
            raise ValueError("a recurrent state holds either four tensors or four None")
        stacked.append(torch.cat([torch.zeros_like(like) if (t := s[i]) is None else t for s in states]))
    return stacked[0], stacked[1], stacked[2], stacked[3]
