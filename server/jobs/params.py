"""Query parameters: declared once, validated strictly (unknown or malformed -> 400)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from collections.abc import Callable

from aiohttp import web

from server.errors import ApiError

# The auth middleware accepts the key as a query parameter too.
_ALWAYS_ALLOWED = ("api_key",)

BACKGROUND_PATTERN = r"^(transparent|green|blue|white|black|blur|#[0-9a-fA-F]{6})$"
BITRATE_PATTERN = r"^[1-9][0-9]{0,8}(\.[0-9]{1,3})?[kKmM]?$"


@dataclass(frozen=True)
class Param:
    name: str
    parse: Callable[[str], Any]   # raises ValueError with a message fit for the client
    default: Any = None


def parse_query(request: web.Request, params: tuple[Param, ...]) -> dict[str, Any]:
    known = {p.name: p for p in params}
    unknown = sorted(k for k in request.query if k not in known and k not in _ALWAYS_ALLOWED)
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)} (allowed: {allowed})",
                       code="unknown_parameter")
    out: dict[str, Any] = {}
    for name, p in known.items():
        values = request.query.getall(name, [])
        if len(values) > 1:
            raise ApiError(400, f"query parameter '{name}' given more than once", code="invalid_parameter")
        if not values:
            out[name] = p.default
            continue
        try:
            out[name] = p.parse(values[0])
        except ValueError as exc:
            raise ApiError(400, f"invalid value for '{name}': {exc}", code="invalid_parameter") from None
    return out


def choice(*options: str) -> Callable[[str], str]:
    def parse(s: str) -> str:
        if s not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return s
    return parse


def integer(lo: int, hi: int) -> Callable[[str], int]:
    def parse(s: str) -> int:
        if not re.fullmatch(r"-?[0-9]{1,12}", s) or not lo <= int(s) <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return int(s)
    return parse


def number(lo: float, hi: float) -> Callable[[str], float]:
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            v = float("nan")
        if not lo <= v <= hi:  # also rejects nan and inf
            raise ValueError(f"expected a number from {lo} to {hi}")
        return v
    return parse


def boolean(s: str) -> bool:
    v = s.lower()
    if v in ("true", "1", "yes"):
        return True
    if v in ("false", "0", "no"):
        return False
    raise ValueError("expected true or false")


def pattern(regex: str, what: str) -> Callable[[str], str]:
    compiled = re.compile(regex)

    def parse(s: str) -> str:
        if not compiled.fullmatch(s):
            raise ValueError(f"expected {what}")
        return s
    return parse


background = pattern(BACKGROUND_PATTERN, "transparent, green, blue, white, black, blur or #rrggbb")
bitrate = pattern(BITRATE_PATTERN, "a bitrate such as 800k or 2M")
