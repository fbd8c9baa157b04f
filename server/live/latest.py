"""A one-item mailbox: the producer overwrites, the consumer always gets the newest.

This is what keeps live latency bounded: when matting is slower than the camera,
stale frames are replaced (and counted) instead of queueing up behind the model.
"""
from __future__ import annotations

import asyncio
import time
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestFrame(Generic[T]):
    """Use from the event loop only (a thread hands items over with ``call_soon_threadsafe``)."""

    def __init__(self) -> None:
        self._item: T | None = None
        self._received_at = 0.0
        self._event = asyncio.Event()
        self._ended: BaseException | None = None

    def put(self, item: T) -> bool:
        """Store ``item``; True if it replaced one nobody took (a dropped frame)."""
        replaced = self._item is not None
        self._item = item
        self._received_at = time.monotonic()
        self._event.set()
        return replaced

    def end(self, reason: BaseException) -> None:
        """No more items will come; ``get`` raises ``reason`` once the slot is empty."""
        self._ended = reason
        self._event.set()

    async def get(self) -> tuple[T, float]:
        """The newest item and when it was put (``time.monotonic()``)."""
        while self._item is None:
            if self._ended is not None:
                raise self._ended
            self._event.clear()
            await self._event.wait()
        item, self._item = self._item, None
        return item, self._received_at
