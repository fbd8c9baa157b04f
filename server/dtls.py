"""Let aiortc complete DTLS with peers whose certificate is RSA (GStreamer's webrtcbin).

aiortc offers only ECDHE-ECDSA cipher suites. When it is the DTLS client (it is,
whenever it answers an offer with ``a=setup:actpass``, as for every WHIP publisher)
and the peer's certificate is RSA, the handshake fails with "no shared cipher":
simple-whip-client and GStreamer's whipsink could not publish. aiortc has no
setting for this, so its context factory is wrapped once at start-up, process-wide,
to also offer the ECDHE-RSA suites. aiortc's own certificate stays ECDSA, so when
it is the DTLS server nothing changes; the peer's certificate is still checked
against the SDP fingerprint.
"""
from __future__ import annotations

import functools
import logging

from aiortc.rtcdtlstransport import RTCCertificate

log = logging.getLogger(__name__)

CIPHERS = (b"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-SHA:"
           b"ECDHE-ECDSA-AES256-SHA:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"
           b"ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA")


def accept_rsa_peers() -> None:
    """Idempotent; logs (and changes nothing) if this aiortc builds its contexts differently."""
    original = getattr(RTCCertificate, "_create_ssl_context", None)
    if original is None:
        log.warning("this aiortc has no _create_ssl_context: DTLS peers with RSA certificates "
                    "(GStreamer WHIP clients) may fail to connect")
        return
    if getattr(original, "abrar_rsa_peers", False):
        return

    @functools.wraps(original)
    def create_ssl_context(self, *args, **kwargs):
        ctx = original(self, *args, **kwargs)
        ctx.set_cipher_list(CIPHERS)
        return ctx

    create_ssl_context.abrar_rsa_peers = True  # type: ignore[attr-defined]
    RTCCertificate._create_ssl_context = create_ssl_context  # type: ignore[method-assign]
