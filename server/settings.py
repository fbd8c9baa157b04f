"""Declarative settings: one dataclass field gives a default, an env var and a CLI flag.

Each feature package owns its own config dataclass; ``ServerConfig`` nests them.
Fields are declared with :func:`setting`; nested dataclasses are recursed into.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from pathlib import Path
from typing import Any, Callable, Mapping


def setting(default: Any, env: str, help: str, *, secret: bool = False, choices: tuple | None = None) -> Any:
    """A config field readable from ``env`` and from ``--flag`` (derived from the field name)."""
    return dataclasses.field(
        default=default, metadata={"env": env, "help": help, "secret": secret, "choices": choices}
    )


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    return typing.get_type_hints(cls)[f.name]


def _parser_for(tp: Any) -> Callable[[str], Any]:
    args = typing.get_args(tp)
    if args and type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        base = _parser_for(inner)
        return lambda s: None if s.strip() == "" else base(s)
    if tp is bool:
        return _parse_bool
    if tp is int:
        return int
    if tp is float:
        return float
    if tp is Path:
        return Path
    return str


def _parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false), got {s!r}")


def _is_nested(cls: type, f: dataclasses.Field) -> bool:
    return dataclasses.is_dataclass(_field_type(cls, f))


def from_env(cls: type, environ: Mapping[str, str] | None = None) -> Any:
    """Build ``cls`` from defaults overridden by environment variables."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if _is_nested(cls, f):
            values[f.name] = from_env(_field_type(cls, f), environ)
            continue
        env = f.metadata.get("env")
        if env and env in environ:
            try:
                values[f.name] = _parser_for(_field_type(cls, f))(environ[env])
            except ValueError as exc:
                raise SystemExit(f"invalid value for {env}: {exc}") from None
    return cls(**values)


def add_arguments(parser: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    """Add one ``--flag`` per setting; defaults are left as None so env values survive."""
    for f in dataclasses.fields(cls):
        tp = _field_type(cls, f)
        if _is_nested(cls, f):
            add_arguments(parser, tp, prefix=f"{prefix}{f.name}.")
            continue
        if "env" not in f.metadata:
            continue
        flag = "--" + (prefix.replace(".", "-") + f.name).replace("_", "-")
        helptext = f"{f.metadata['help']} (env {f.metadata['env']}; default: {f.default!r})"
        parser.add_argument(
            flag,
            dest=prefix + f.name,
            type=_parser_for(tp),
            default=None,
            choices=f.metadata.get("choices"),
            metavar=f.name.upper(),
            help=helptext.replace("%", "%%"),
        )


def apply_args(config: Any, args: argparse.Namespace, prefix: str = "") -> Any:
    """Return ``config`` with every flag the user gave applied on top."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        current = getattr(config, f.name)
        if dataclasses.is_dataclass(current):
            changes[f.name] = apply_args(current, args, prefix=f"{prefix}{f.name}.")
            continue
        value = getattr(args, prefix + f.name, None)
        if value is not None:
            changes[f.name] = value
    return dataclasses.replace(config, **changes)


def describe(config: Any, prefix: str = "") -> list[tuple[str, str]]:
    """(name, value) pairs for printing at start-up; secrets are masked."""
    rows: list[tuple[str, str]] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, prefix=f"{prefix}{f.name}."))
            continue
        shown = "***" if f.metadata.get("secret") and value else repr(value)
        rows.append((prefix + f.name, shown))
    return rows
