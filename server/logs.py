"""Logging for `abrar serve`: one format, and no secret in any line (access log included)."""
from __future__ import annotations

import logging
import re
from collections.abc import Iterable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The pages put the key in download links (?api_key=...); aiohttp logs request lines whole.
_KEY_PARAM = re.compile(r"(api_key=)[^&\s\"']*", re.IGNORECASE)


class RedactSecrets(logging.Filter):
    """Masks ``api_key=`` query values and the given secrets wherever they appear."""

    def __init__(self, secrets: Iterable[str | None] = ()):
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _KEY_PARAM.sub(r"\1***", message)
        for secret in self._secrets:
            redacted = redacted.replace(secret, "***")
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def configure(level: str, secrets: Iterable[str | None] = ()) -> None:
    logging.basicConfig(level=level.upper(), format=FORMAT)
    redact = RedactSecrets(secrets)
    # on the handlers, so that records propagated from every logger pass through it
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
