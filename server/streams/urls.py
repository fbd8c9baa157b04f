"""Camera URL checks and credential redaction (pure functions, no I/O).

Only ``rtsp://`` and ``rtsps://`` URLs with a plain host get through. The accepted
syntax is deliberately narrower than RFC 3986 so that Python and FFmpeg cannot
disagree about which host a URL names (one ``@`` at most, no backslashes, no
whitespace or control characters), which keeps the host allow-list meaningful.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

SCHEMES = {"rtsp": 554, "rtsps": 322}
MAX_URL_LENGTH = 2048

_HOSTNAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,62}[a-z0-9])?)*\.?$")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")
# Query keys whose values are credentials on common cameras (e.g. ?user=admin&password=...).
_SECRET_KEYS = re.compile(r"user|pass|pwd|token|secret|auth|key|sig", re.IGNORECASE)
# The same keys written into the path, as some cameras take them: /user=admin_password=x_channel=1
_SECRET_IN_PATH = re.compile(r"((?:user|pass|pwd|token|secret|auth|key|sig)[a-z-]*=)[^/&;?]*?(?=_[a-z]+=|[/&;?]|$)",
                             re.IGNORECASE)
_USERINFO_IN_TEXT = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@]+@")


class UrlError(ValueError):
    """The URL is not an acceptable camera source; the message says why."""


class HostNotAllowed(UrlError):
    """A well-formed camera URL whose host is not on the allow-list."""


@dataclass(frozen=True)
class SourceUrl:
    url: str            # as given, credentials included: server-side use only
    scheme: str
    host: str           # lower case; IPv6 without brackets
    port: int           # explicit or the scheme's default
    redacted: str       # safe to show in responses and logs


@dataclass(frozen=True)
class HostRule:
    """One allow-list entry: a host name or IP (optionally with a port), or an IP network."""
    host: str | None = None
    port: int | None = None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    def matches(self, host: str, port: int) -> bool:
        if self.network is not None:
            ip = _ip_or_none(host)
            return ip is not None and ip.version == self.network.version and ip in self.network
        return host == self.host and (self.port is None or port == self.port)


def parse_allow_list(text: str) -> tuple[HostRule, ...]:
    """``"cam1.lan, 10.0.0.5:554, 192.168.1.0/24, [fd00::1]"`` -> rules. Raises ValueError."""
    rules = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        if "/" in entry:
            try:
                rules.append(HostRule(network=ipaddress.ip_network(entry, strict=False)))
            except ValueError:
                raise ValueError(f"allowed host {entry!r} is not a valid IP network") from None
            continue
        host, port = _split_host_port(entry)
        if host is None:
            raise ValueError(f"allowed host {entry!r} is not a host name, IP or host:port")
        rules.append(HostRule(host=host, port=port))
    return tuple(rules)


def parse_source_url(url: object, allowed: tuple[HostRule, ...] = ()) -> SourceUrl:
    """Validate a camera URL; raises :class:`UrlError` with a message safe to return."""
    if not isinstance(url, str) or not url:
        raise UrlError("url must be a non-empty string such as rtsp://camera.local:554/stream")
    if len(url) > MAX_URL_LENGTH:
        raise UrlError(f"url is longer than {MAX_URL_LENGTH} characters")
    if _FORBIDDEN.search(url):
        raise UrlError("url must not contain whitespace, control characters or backslashes")
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme not in SCHEMES:
        raise UrlError("only rtsp:// and rtsps:// camera URLs are accepted"
                       + (f" (got a {scheme}: URL)" if _looks_like_scheme(scheme) else ""))
    try:
        parts = urlsplit(url)
    except ValueError:
        raise UrlError("url is malformed") from None
    if not url[len(scheme):].startswith("://"):
        raise UrlError(f"url must look like {scheme}://host[:port]/path")
    if parts.fragment:
        raise UrlError("url must not contain a #fragment")
    netloc = parts.netloc
    if netloc.count("@") > 1:
        raise UrlError("url has more than one '@'; percent-encode '@' in user names and passwords")
    hostport = netloc.rsplit("@", 1)[-1]
    host, port = _split_host_port(hostport)
    if host is None:
        raise UrlError("url has no valid host" if hostport else "url has no host")
    port = port or SCHEMES[scheme]
    if allowed and not any(rule.matches(host, port) for rule in allowed):
        raise HostNotAllowed(f"host {_show_host(host)}:{port} is not on this server's allow-list of camera hosts")
    # FFmpeg matches the scheme case-sensitively.
    url = scheme + url[len(scheme):]
    return SourceUrl(url=url, scheme=scheme, host=host, port=port, redacted=redact(url))


def redact(url: str) -> str:
    """The URL without user name, password or credential-like query values."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _USERINFO_IN_TEXT.sub(r"\1***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    path = _SECRET_IN_PATH.sub(r"\1***", parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def redact_text(text: str, url: str) -> str:
    """Scrub ``url`` (and anything shaped like ``scheme://user:pass@``) from a message,
    e.g. an FFmpeg error that quotes the URL it failed to open."""
    if url:
        text = text.replace(url, redact(url))
    return _USERINFO_IN_TEXT.sub(r"\1***@", text)


def _split_host_port(hostport: str) -> tuple[str | None, int | None]:
    match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::(\d{1,5}))?", hostport)
    if not match:
        return None, None
    host, port_text = match.group(1), match.group(2)
    port = int(port_text) if port_text else None
    if port is not None and not 0 < port < 65536:
        return None, None
    if host.startswith("["):
        ip = _ip_or_none(host[1:-1])
        return (str(ip), port) if ip is not None and ip.version == 6 else (None, None)
    host = host.lower()
    return (host, port) if _HOSTNAME.match(host) else (None, None)


def _ip_or_none(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _show_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _looks_like_scheme(scheme: str) -> bool:
    return bool(re.fullmatch(r"[a-z][a-z0-9+.-]{0,15}", scheme))
