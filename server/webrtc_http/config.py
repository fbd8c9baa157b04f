"""Settings for WHIP ingest and WHEP playback (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting

ICE_SCHEMES = ("stun:", "stuns:", "turn:", "turns:")


@dataclass(frozen=True)
class WebRtcHttpConfig:
    ice_servers: str = setting("", "ABRAR_ICE_SERVERS",
                               "comma-separated STUN/TURN URLs (stun:host:3478, turn:host:3478?transport=udp) "
                               "offered to WHIP/WHEP clients in Link headers; the server itself only uses "
                               "host candidates")
    ice_username: str | None = setting(None, "ABRAR_ICE_USERNAME", "username for the turn: servers above")
    ice_credential: str | None = setting(None, "ABRAR_ICE_CREDENTIAL", "password for the turn: servers above",
                                         secret=True)
    whep_max_viewers: int = setting(8, "ABRAR_WHEP_MAX_VIEWERS",
                                    "WHEP viewers per live session (RTSP streams use ABRAR_STREAMS_MAX_VIEWERS)")

    def __post_init__(self):
        problems = [f"ABRAR_ICE_SERVERS: {url!r} is not a stun:, stuns:, turn: or turns: URL"
                    for url in self.ice_server_urls if not url.startswith(ICE_SCHEMES)]
        if self.whep_max_viewers < 1:
            problems.append(f"ABRAR_WHEP_MAX_VIEWERS must be at least 1, not {self.whep_max_viewers}")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def ice_server_urls(self) -> list[str]:
        return [u.strip() for u in self.ice_servers.split(",") if u.strip()]
