"""Settings for server.streams (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting


@dataclass(frozen=True)
class StreamsConfig:
    max_streams: int = setting(4, "ABRAR_STREAMS_MAX", "RTSP streams ingested at once (each runs its own inference)")
    max_viewers: int = setting(8, "ABRAR_STREAMS_MAX_VIEWERS", "WebRTC viewers per stream")
    viewer_connect_timeout_s: float = setting(
        20.0, "ABRAR_STREAMS_VIEWER_CONNECT_TIMEOUT",
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
    reconnect_min_s: float = setting(0.5, "ABRAR_STREAMS_RECONNECT_MIN",
                                     "seconds between reconnect tries while an outage is young")
    reconnect_fast_s: float = setting(30.0, "ABRAR_STREAMS_RECONNECT_FAST",
                                      "retry every RECONNECT_MIN seconds for this long into an outage, then back off")
    reconnect_max_s: float = setting(30.0, "ABRAR_STREAMS_RECONNECT_MAX",
                                     "longest reconnect delay in seconds (the delay grows with the outage up to this)")
    gap_reset_s: float = setting(2.0, "ABRAR_STREAMS_GAP_RESET",
                                 "a pause in frames longer than this resets the matting state and counts as a gap")
    matte: str = setting("on_demand", "ABRAR_STREAMS_MATTE",
                         "on_demand: matte a stream only while it has a viewer or records (it stays connected "
                         "and resumes at the next frame); always: matte every frame", choices=("on_demand", "always"))
    segment_s: float = setting(600.0, "ABRAR_STREAMS_SEGMENT",
                               "start a new recording file after this many seconds (0: only after a reconnect)")
    persist: bool = setting(True, "ABRAR_STREAMS_PERSIST",
                            "save the stream list to DATA_DIR/streams.json and re-create it at start-up")
