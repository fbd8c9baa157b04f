"""Settings for server.streams (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class StreamsConfig:
    max_streams: int = setting(4, "ABRAR_STREAMS_MAX", "RTSP streams ingested at once (each runs its own inference)")
    max_viewers: int = setting(8, "ABRAR_STREAMS_MAX_VIEWERS", "WebRTC viewers per stream")
    viewer_connect_timeout_s: float = setting(20.0, "ABRAR_STREAMS_VIEWER_CONNECT_TIMEOUT",
                                              "drop a viewer whose WebRTC connection is not up within this many seconds")
    allowed_hosts: str = setting(
        "", "ABRAR_STREAMS_ALLOWED_HOSTS",
        "comma-separated camera hosts allowed in stream URLs: names, IPs, host:port or CIDR "
        "networks such as 10.0.0.0/8 (empty: any host)")
    default_background: str = setting("green", "ABRAR_STREAMS_BACKGROUND",
                                      "background of new streams: transparent, green, #rrggbb, blur, blur:N")
    transport: str = setting("tcp", "ABRAR_STREAMS_TRANSPORT", "RTSP transport for RTP data",
                             choices=("tcp", "udp"))
    open_timeout_s: float = setting(5.0, "ABRAR_STREAMS_OPEN_TIMEOUT", "seconds to connect to a camera")
    read_timeout_s: float = setting(5.0, "ABRAR_STREAMS_READ_TIMEOUT",
                                    "seconds without data before a connection counts as dropped")
    reconnect_min_s: float = setting(0.5, "ABRAR_STREAMS_RECONNECT_MIN", "first reconnect delay in seconds")
    reconnect_max_s: float = setting(30.0, "ABRAR_STREAMS_RECONNECT_MAX",
                                     "longest reconnect delay in seconds (the delay doubles up to this)")
    gap_reset_s: float = setting(2.0, "ABRAR_STREAMS_GAP_RESET",
                                 "a pause in frames longer than this resets the matting state and counts as a gap")
    persist: bool = setting(True, "ABRAR_STREAMS_PERSIST",
                            "save the stream list to DATA_DIR/streams.json and re-create it at start-up")
