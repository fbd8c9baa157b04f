"""Incoming video frames go to the decoder as soon as their last packet is in.

aiortc's jitter buffer hands a frame over only when the first packet of the *next*
frame arrives, which adds one frame interval (33 ms at 30 fps) to every live frame.
Video packetizers set the RTP marker bit on a frame's last packet, so a contiguous
run of packets from the buffer's start to a marked one is a whole frame already.
"""
from __future__ import annotations

import logging

from aiortc import RTCPeerConnection
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtp import RtpPacket

log = logging.getLogger(__name__)

# RTCRtpReceiver keeps its jitter buffer in this private attribute (aiortc 1.9 to 1.16).
_RECEIVER_BUFFER = "_RTCRtpReceiver__jitter_buffer"


class MarkerJitterBuffer(JitterBuffer):
    """aiortc's video jitter buffer, plus: a frame whose packets are all in, up to the one with
    the marker bit, is released at once."""

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        pli_flag, frame = super().add(packet)
        if frame is None:
            frame = self._take_complete_frame()
        return pli_flag, frame

    def _take_complete_frame(self) -> JitterFrame | None:
        if self._origin is None:
            return None
        packets: list[RtpPacket] = []
        for count in range(self.capacity):
            packet = self._packets[(self._origin + count) % self.capacity]
            if packet is None or (packets and packet.timestamp != packets[0].timestamp):
                return None  # a gap, or a frame without its marker: wait as aiortc does
            packets.append(packet)
            if packet.marker:
                self.remove(count + 1)
                return JitterFrame(data=b"".join(p._data for p in packets),  # type: ignore[attr-defined]
                                   timestamp=packet.timestamp)
        return None


def release_frames_early(pc: RTCPeerConnection, track: MediaStreamTrack) -> bool:
    """Give the receiver of video ``track`` a :class:`MarkerJitterBuffer`. Call it from the
    ``track`` event, before any packet arrives. False (and the stock buffer) where this
    aiortc keeps its buffer elsewhere."""
    for transceiver in pc.getTransceivers():
        receiver = transceiver.receiver
        if receiver.track is not track:
            continue
        current = getattr(receiver, _RECEIVER_BUFFER, None)
        if not isinstance(current, JitterBuffer):
            break
        if not isinstance(current, MarkerJitterBuffer):
            setattr(receiver, _RECEIVER_BUFFER, MarkerJitterBuffer(current.capacity, is_video=True))
        return True
    log.warning("this aiortc's receiver has no jitter buffer where expected; "
                "incoming video keeps one frame of extra latency")
    return False
