"""The flat-key machinery: dotted kebab-case keys to typed, checked values and back, for any schema.

A schema is a tree of frozen dataclasses (:mod:`fl_sim.config.schema`); a key such as
``train.lr`` names a path through it. Values are checked against the field's declared type
(``Literal`` types list the allowed values) and its range in the field's metadata; any unknown
key or bad value raises :class:`fl_sim.errors.ConfigError` with one line that names the key and
what is allowed. Nothing here knows the run's schema: its root is passed in.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from fl_sim.errors import ConfigError

Scalar = bool | int | float | str


def setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
             min_exclusive: bool = False) -> Any:
    """Declare one configuration field with its help text and optional numeric range (read by :func:`build`)."""
    return dataclasses.field(default=default, metadata={"help": help, "min": min, "max": max,
                                            "min_exclusive": min_exclusive})


def kebab(name: str) -> str:
    """A field's name as its key: ``batch_size`` -> ``batch-size``."""
    return name.replace("_", "-")


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    """A section's fields by key."""
    return {kebab(f.name): f for f in dataclasses.fields(cls)}


def is_section(tp: Any) -> bool:
    """Whether a field's type is a section (a nested dataclass) rather than a value."""
    return dataclasses.is_dataclass(tp)


def resolve_key(root: type, key: str) -> list[str]:
    """Split a dotted key of the schema ``root`` and check that every part names a field; raise ConfigError if not."""
    parts = key.split(".")
    cls: type = root
    for depth, part in enumerate(parts):
        fields = fields_of(cls)
        hints = typing.get_type_hints(cls)
        prefix = ".".join(parts[:depth])
        if part not in fields:
            allowed = sorted(f"{prefix}.{k}" if prefix else k for k in fields)
            close = difflib.get_close_matches(key, all_keys(root), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint} (allowed here: {', '.join(allowed)})")
        tp = hints[fields[part].name]
        last = depth == len(parts) - 1
        if is_section(tp) == last:
            what = "a section; set one of its keys, e.g." if last else "not a section:"
            example = f"{key}.{next(iter(fields_of(tp)))}" if last else ".".join(parts[: depth + 1])
            raise ConfigError(f"config key '{key}' is {what} '{example}'")
        cls = tp
    return parts


def all_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted key of the schema ``cls``, in declaration order."""
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for name, f in fields_of(cls).items():
        tp = hints[f.name]
        full = f"{prefix}{name}"
        keys.extend(all_keys(tp, full + ".") if is_section(tp) else [full])
    return keys


def build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    """The section ``cls`` from nested ``values`` (missing keys keep their defaults), every value checked."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields_of(cls).items():
        if name not in values:
            continue
        tp = hints[f.name]
        if is_section(tp):
            kwargs[f.name] = build(tp, values[name], prefix=f"{prefix}{name}.")
        else:
            kwargs[f.name] = _coerce(f"{prefix}{name}", values[name], tp, f.metadata)
    return cls(**kwargs)


def _coerce(key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Scalar:
    """Check one value against its declared type and range; return it in the declared type."""
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, str) and all(isinstance(a, int) for a in allowed) and value.isdigit():
            value = int(value)
        if value not in allowed or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
        return value
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `--set faults.partitions=1` and `--run-config` parse a lone number as one
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string; got {value!r}")
        return value
    converted = _to_number(value, tp)
    if converted is None:
        raise ConfigError(f"config key '{key}' must be {'an integer' if tp is int else 'a number'}; got {value!r}")
    if not math.isfinite(converted):
        raise ConfigError(f"config key '{key}' must be a finite number; got {converted}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (converted < lo or (meta.get("min_exclusive") and converted == lo)):
        op = ">" if meta.get("min_exclusive") else ">="
        raise ConfigError(f"config key '{key}' must be {op} {lo}; got {converted}")
    if hi is not None and converted > hi:
        raise ConfigError(f"config key '{key}' must be <= {hi}; got {converted}")
    return converted


def _to_number(value: Any, tp: type) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return None
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def flatten(obj: Any, prefix: str):
    """``(dotted key, value)`` of every value of the section instance ``obj``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{kebab(f.name)}"
        if dataclasses.is_dataclass(value):
            yield from flatten(value, key + ".")
        else:
            yield key, value


def parse_ids(text: str, key: str) -> set[int]:
    """The non-negative integers of a comma-separated list such as ``"0, 3"``; '' is the empty set."""
    ids = set()
    for token in filter(None, (t.strip() for t in text.split(","))):
        if not token.isdigit():
            raise ConfigError(f"config key '{key}' must list whole numbers separated by commas, e.g. '0,3'; "
                              f"got {text!r}")
        ids.add(int(token))
    return ids


def check_path_component(name: str, key: str) -> None:
    """Refuse a name that is not one plain path component, so that results stay inside ``output.dir``.

    No separators, no ``.`` or ``..``, no leading or trailing blanks, no control characters;
    the empty name is allowed (it means "pick one").
    """
    problem = None
    if any(sep in name for sep in ("/", "\\")):
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "names a directory, not a new one"
    elif name != name.strip():
        problem = "starts or ends with a blank"
    elif any(unicodedata.category(char) == "Cc" for char in name):
        problem = "contains a control character"
    if problem:
        raise ConfigError(f"config key '{key}' must be one folder name such as 'my-run' ({problem}); "
                          f"got {name!r}")


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override (the CLI's ``--set``); values are read as TOML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=0.05")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word such as dirichlet is a string
    return key.strip(), value


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file (sections or dotted keys) as a flat mapping of dotted keys."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from err
    return dict(_flatten_mapping(data, prefix=""))


def _flatten_mapping(data: Mapping[str, Any], prefix: str):
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten_mapping(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def describe(root: type) -> list[tuple[str, Scalar, str]]:
    """(key, default, help) for every key of the schema ``root``, as `fl-sim config` and its page show them."""
    defaults = dict(flatten(root(), prefix=""))
    rows = []
    for key in all_keys(root):
        cls: type = root
        parts = key.split(".")
        for part in parts[:-1]:
            cls = typing.get_type_hints(cls)[fields_of(cls)[part].name]
        f = fields_of(cls)[parts[-1]]
        tp = typing.get_type_hints(cls)[f.name]
        choices = " | ".join(map(str, typing.get_args(tp))) if typing.get_origin(tp) is Literal else ""
        help_text = f.metadata["help"] + (f" ({choices})" if choices else "")
        rows.append((key, defaults[key], help_text))
    return rows
