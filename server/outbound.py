"""HTTP requests the server makes to addresses its clients name (webhooks, URL inputs).

A host must be on the feature's allow-list (names, IPs, CIDR networks; the syntax of
ABRAR_STREAMS_ALLOWED_HOSTS), and an address in a private, loopback, link-local or
otherwise non-public range is refused unless an IP or network entry covers it:
listing a name does not open the internal network to whatever that name resolves
to. The check runs on every address the name resolves to when connecting (aiohttp's
resolver is wrapped), so a name cannot be re-pointed between check and connection.
Redirects are never followed here; callers decide what to do with a 3xx.
"""
from __future__ import annotations

import errno
import ipaddress
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from server.streams.urls import HostNotAllowed, HostRule, UrlError, parse_allow_list

SCHEMES = {"http": 80, "https": 443}
MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    url: URL
    host: str
    port: int


@dataclass(frozen=True)
class OutboundPolicy:
    rules: tuple[HostRule, ...]
    what: str  # "callback hosts", "input URL hosts": names the list in error messages

    @classmethod
    def parse(cls, text: str, what: str) -> OutboundPolicy:
        return cls(parse_allow_list(text), what)

    @property
    def enabled(self) -> bool:
        return bool(self.rules)

    def check_url(self, text: object) -> Target:
        """An http(s) URL whose host is on the list; raises UrlError / HostNotAllowed."""
        if not isinstance(text, str) or not text:
            raise UrlError("expected an http:// or https:// URL")
        if len(text) > MAX_URL_LENGTH:
            raise UrlError(f"the URL is longer than {MAX_URL_LENGTH} characters")
        try:
            url = URL(text)
        except (ValueError, TypeError):
            raise UrlError("the URL is malformed") from None
        if url.scheme not in SCHEMES or not url.host:
            raise UrlError("only http:// and https:// URLs with a host are accepted")
        if url.user is not None or url.password is not None:
            raise UrlError("the URL must not carry a user name or password")
        host = url.host.lower().rstrip(".")
        port = url.port or SCHEMES[url.scheme]
        if not any(rule.matches(host, port) for rule in self.rules):
            raise HostNotAllowed(f"{host}:{port} is not on this server's allow-list of {self.what}")
        ip = _ip(host)
        if ip is not None:
            self.check_address(ip, host, port)
        return Target(url, host, port)

    def check_address(self, ip: IPAddress, host: str, port: int) -> None:
        """Public addresses of an allowed host pass; others only if an IP/network entry lists them."""
        if ip.is_global and not ip.is_multicast:
            return
        if any(rule.matches(str(ip), port) for rule in self.rules if rule.host is None or _ip(rule.host)):
            return
        raise HostNotAllowed(f"{host} resolves to {ip}, a non-public address; list that IP or its network "
                             f"among the {self.what} to allow it")


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, keeping only the addresses ``policy`` allows."""

    def __init__(self, policy: OutboundPolicy):
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed, refused = [], None
        for entry in found:
            try:
                self._policy.check_address(ipaddress.ip_address(entry["host"]), host, port)
                allowed.append(entry)
            except HostNotAllowed as exc:
                refused = exc
        if not allowed:  # aiohttp reports the strerror of the OSError
            raise OSError(errno.EPERM, str(refused) if refused else f"{host} did not resolve")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def client_session(policy: OutboundPolicy, timeout_s: float) -> aiohttp.ClientSession:
    """A session that can only connect to addresses ``policy`` allows."""
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=16)
    return aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s),
                                 headers={"User-Agent": "abrar"})


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
