"""Settings for job webhooks (env vars and `abrar serve` flags)."""
from __future__ import annotations

from dataclasses import dataclass

from server.settings import setting
from server.streams.urls import parse_allow_list


@dataclass(frozen=True)
class WebhooksConfig:
    allowed_hosts: str = setting(
        "", "ABRAR_WEBHOOK_ALLOWED_HOSTS",
        "hosts a job's callback_url may name: names, IPs, host:port or CIDR networks (empty: no callbacks); "
        "private and loopback addresses need an IP or network entry")
    secret: str | None = setting(None, "ABRAR_WEBHOOK_SECRET",
                                 "key for the HMAC-SHA256 signature of each callback (required with callbacks)",
                                 secret=True)
    timeout_s: float = setting(10.0, "ABRAR_WEBHOOK_TIMEOUT", "seconds one callback attempt may take")
    max_attempts: int = setting(8, "ABRAR_WEBHOOK_MAX_ATTEMPTS", "attempts before a callback is given up")
    backoff_s: float = setting(2.0, "ABRAR_WEBHOOK_BACKOFF",
                               "seconds before the first retry; doubles after each failure")
    max_backoff_s: float = setting(300.0, "ABRAR_WEBHOOK_MAX_BACKOFF", "longest wait between two attempts")
    retry_for_s: float = setting(3600.0, "ABRAR_WEBHOOK_RETRY_FOR",
                                 "no retry starts later than this many seconds after the first attempt")

    def __post_init__(self):
        problems = []
        try:
            enabled = bool(parse_allow_list(self.allowed_hosts))
        except ValueError as exc:
            problems.append(f"ABRAR_WEBHOOK_ALLOWED_HOSTS: {exc}")
            enabled = False
        if enabled and not self.secret:
            problems.append("ABRAR_WEBHOOK_SECRET must be set when ABRAR_WEBHOOK_ALLOWED_HOSTS is: receivers "
                            "verify callbacks with it (e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
        if self.max_attempts < 1:
            problems.append(f"ABRAR_WEBHOOK_MAX_ATTEMPTS must be at least 1, not {self.max_attempts}")
        for env, value in (("ABRAR_WEBHOOK_TIMEOUT", self.timeout_s), ("ABRAR_WEBHOOK_BACKOFF", self.backoff_s),
                           ("ABRAR_WEBHOOK_MAX_BACKOFF", self.max_backoff_s),
                           ("ABRAR_WEBHOOK_RETRY_FOR", self.retry_for_s)):
            if not value > 0:
                problems.append(f"{env} must be above 0 seconds, not {value}")
        if problems:
            raise ValueError("; ".join(problems))
