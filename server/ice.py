"""Which local addresses WebRTC offers as ICE host candidates.

aioice offers every interface address except loopback, so on a loopback-only host
(or where traffic must stay on 127.0.0.1) no connection can form. aioice has no
per-connection setting for this, so the address lister is swapped once at start-up,
for the whole process, from the server's configuration.
"""
from __future__ import annotations

from typing import Sequence

import aioice.ice


def use_host_addresses(addresses: Sequence[str]) -> None:
    """Offer exactly ``addresses`` (IPv4 or IPv6 literals) as host candidates."""
    fixed = [a.strip() for a in addresses if a.strip()]

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in fixed if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = host_addresses
