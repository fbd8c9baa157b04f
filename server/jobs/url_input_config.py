"""Settings for inputs given by URL (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting
from server.streams.urls import parse_allow_list


@dataclass(frozen=True)
class UrlInputConfig:
    allowed_hosts: str = setting(
        "", "ABRAR_URL_INPUT_ALLOWED_HOSTS",
        "hosts that url= on /remove-bg and /remove-bg-video may fetch from: names, IPs, host:port or CIDR "
        "networks (empty: url= is off); private and loopback addresses need an IP or network entry")
    timeout_s: float = setting(60.0, "ABRAR_URL_INPUT_TIMEOUT", "seconds a URL fetch may take in all")
    max_redirects: int = setting(3, "ABRAR_URL_INPUT_MAX_REDIRECTS",
                                 "redirects followed, each checked against the allow-list")

    def __post_init__(self):
        problems = []
        try:
            parse_allow_list(self.allowed_hosts)
        except ValueError as exc:
            problems.append(f"ABRAR_URL_INPUT_ALLOWED_HOSTS: {exc}")
        if not self.timeout_s > 0:
            problems.append(f"ABRAR_URL_INPUT_TIMEOUT must be above 0 seconds, not {self.timeout_s}")
        if not 0 <= self.max_redirects <= 10:
            problems.append(f"ABRAR_URL_INPUT_MAX_REDIRECTS must be from 0 to 10, not {self.max_redirects}")
        if problems:
            raise ValueError("; ".join(problems))
