"""Query parameters: declared once, validated strictly (unknown or malformed -> 400)."""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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
    return parse_options(request, params, None)


def parse_options(request: web.Request, params: tuple[Param, ...],
                  form: Mapping[str, str] | None) -> dict[str, Any]:
    """Options from the query string and from form fields (already limited to the
    names in ``params`` by the form reader; None where the request has no form): the
    same names either way, not both."""
    known = {p.name: p for p in params}
    unknown = sorted(k for k in request.query if k not in known and k not in _ALWAYS_ALLOWED)
    if unknown:
        allowed = ", ".join(known) or "none"
        where = " as query parameters or form fields" if form is not None and known else ""
        raise ApiError(400, f"unknown query parameter(s): {', '.join(unknown)} (allowed{where}: {allowed})",
                       code="unknown_parameter")
    form = form or {}
    both = sorted(set(form) & set(request.query))
    if both:
        raise ApiError(400, f"{', '.join(both)} given both as a query parameter and as a form field; "
                            "give each option once", code="invalid_parameter")
    for name in known:
        if len(request.query.getall(name, [])) > 1:
            raise ApiError(400, f"query parameter '{name}' given more than once", code="invalid_parameter")
    values = {name: request.query[name] for name in known if name in request.query}
    return _parse({**values, **form}, params)


def _parse(values: Mapping[str, str], params: tuple[Param, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for p in params:
        if p.name not in values:
            out[p.name] = p.default
            continue
        try:
            out[p.name] = p.parse(values[p.name])
        except ValueError as exc:
            raise ApiError(400, f"invalid value for '{p.name}': {exc}", code="invalid_parameter") from None
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
