"""Keep aiortc from starting a receiver that was already stopped.

``RTCPeerConnection`` starts each receiver (and its decoder thread) from a background
task once ICE and DTLS connect. If ``close()`` runs while that task is suspended between
its checks, the receivers are stopped before they start, and then start anyway: the
decoder thread, not a daemon, waits on its queue for good. A server leaks one thread per
such race, and a process that leaked one never exits (a clean-clone CI run hung after
its last test on an ``audio-decoder`` thread). aiortc has no setting for this, so its
receiver is wrapped once at start-up, process-wide, to remember a stop and then refuse
to start.
"""
from __future__ import annotations

import functools
import logging

from aiortc.rtcrtpreceiver import RTCRtpReceiver

log = logging.getLogger(__name__)
_STOPPED = "_abrar_stopped"


def no_start_after_stop() -> None:
    """Idempotent."""
    receive, stop = RTCRtpReceiver.receive, RTCRtpReceiver.stop
    if getattr(receive, "abrar_no_start_after_stop", False):
        return

    @functools.wraps(stop)
    async def stop_once_and_for_all(self: RTCRtpReceiver) -> None:
        setattr(self, _STOPPED, True)
        await stop(self)

    @functools.wraps(receive)
    async def receive_unless_stopped(self: RTCRtpReceiver, parameters) -> None:
        if getattr(self, _STOPPED, False):
            log.debug("not starting an RTP receiver that was stopped before it started")
            return
        await receive(self, parameters)

    receive_unless_stopped.abrar_no_start_after_stop = True  # type: ignore[attr-defined]
    RTCRtpReceiver.receive = receive_unless_stopped  # type: ignore[method-assign]
    RTCRtpReceiver.stop = stop_once_and_for_all  # type: ignore[method-assign]
