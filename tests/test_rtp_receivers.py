"""A receiver that aiortc stopped before it started must never start its decoder thread:
the race between ``RTCPeerConnection.close()`` and the task that starts receivers once
ICE and DTLS connect (server/rtp_receivers.py). Two real aiortc peers on loopback; the
answering peer's receiver is stopped (what close() does first) before its connect task
gets to it."""
from __future__ import annotations

import asyncio
import threading

from aiortc import RTCPeerConnection
from aiortc.mediastreams import AudioStreamTrack

from server.rtp_receivers import no_start_after_stop


def decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("-decoder") and t.is_alive()}


async def connect_with_receiver_stopped_first() -> tuple[set[threading.Thread], str]:
    before = decoder_threads()
    sender, answerer = RTCPeerConnection(), RTCPeerConnection()
    try:
        sender.addTrack(AudioStreamTrack())
        await sender.setLocalDescription(await sender.createOffer())
        await answerer.setRemoteDescription(sender.localDescription)
        await answerer.setLocalDescription(await answerer.createAnswer())  # schedules its connect task
        (transceiver,) = answerer.getTransceivers()
        await transceiver.receiver.stop()  # before that task has run
        await sender.setRemoteDescription(answerer.localDescription)
        for _ in range(100):  # connected, and the connect task past its receivers
            if answerer.connectionState == "connected" and sender.connectionState == "connected":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)
        return decoder_threads() - before, answerer.connectionState
    finally:
        await sender.close()
        await answerer.close()


def test_a_receiver_stopped_before_it_started_never_starts():
    no_start_after_stop()
    no_start_after_stop()  # idempotent
    leaked, state = asyncio.run(asyncio.wait_for(connect_with_receiver_stopped_first(), 30))
    assert state == "connected", "the peers never connected, so nothing was tested"
    assert not leaked, f"a receiver stopped before it started began decoding anyway: {leaked}"
