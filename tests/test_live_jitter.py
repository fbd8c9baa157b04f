"""Incoming video frames leave the jitter buffer with their last packet, not one frame later."""
from __future__ import annotations

import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtp import RtpPacket

from server.live.jitter import (
    _RECEIVER_BUFFER,
    MarkerJitterBuffer,
    release_frames_early,
)
from webrtc_client import ClipTrack


def _packet(seq: int, ts: int, data: bytes, marker: bool = False) -> RtpPacket:
    packet = RtpPacket(payload_type=96, marker=int(marker), sequence_number=seq, timestamp=ts)
    packet._data = data  # what aiortc's depayloader leaves on a packet
    return packet


def test_a_frame_leaves_with_its_marked_packet():
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    stock = JitterBuffer(capacity=128, is_video=True)
    frames = [[(0, 3000, b"a1"), (1, 3000, b"a2"), (2, 3000, b"a3", True)],
              [(3, 6000, b"b1", True)],
              [(4, 9000, b"c1"), (5, 9000, b"c2", True)]]
    got, stock_got = [], []
    for frame in frames:
        for args in frame:
            _, out = buffer.add(_packet(*args))
            _, late = stock.add(_packet(*args))
            if out is not None:
                got.append((args[0], out.timestamp, out.data))
            if late is not None:
                stock_got.append((args[0], late.timestamp))
    # each frame out with its last packet; aiortc's own buffer waits for the next frame's first
    assert got == [(2, 3000, b"a1a2a3"), (3, 6000, b"b1"), (5, 9000, b"c1c2")]
    assert stock_got == [(3, 3000), (4, 6000)]


def test_an_incomplete_frame_waits_for_its_missing_packet():
    buffer = MarkerJitterBuffer(capacity=128, is_video=True)
    assert buffer.add(_packet(10, 3000, b"a1"))[1] is None
    assert buffer.add(_packet(12, 3000, b"a3", True))[1] is None  # 11 is missing
    _, out = buffer.add(_packet(11, 3000, b"a2"))  # retransmitted
    assert out is not None and out.data == b"a1a2a3"
    assert buffer.add(_packet(11, 3000, b"a2"))[1] is None  # a late duplicate is ignored


@pytest.mark.timeout(30)
async def test_a_session_receiver_gets_the_early_buffer():
    sender = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    receiver = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    try:
        sender.addTrack(ClipTrack([]))
        await sender.setLocalDescription(await sender.createOffer())
        swapped = []
        receiver.on("track", lambda track: swapped.append(release_frames_early(receiver, track)))
        await receiver.setRemoteDescription(RTCSessionDescription(sdp=sender.localDescription.sdp, type="offer"))
        assert swapped == [True]
        (transceiver,) = receiver.getTransceivers()
        assert isinstance(getattr(transceiver.receiver, _RECEIVER_BUFFER), MarkerJitterBuffer)
    finally:
        await sender.close()
        await receiver.close()
