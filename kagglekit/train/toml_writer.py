"""A TOML writer for the configs kagglekit writes (plain values, lists, tables, arrays of tables, inline tables).

Written here rather than adding tomli-w to the offline wheel set for one small job; every config it
writes is read back with :mod:`tomllib` by its caller.
"""

from __future__ import annotations

import json
import math

__all__ = ["dumps"]


def dumps(data: dict) -> str:
    """``data`` as TOML: plain keys first, then each table (``[name]``) and array of tables (``[[name]]``)."""
    return _table(data, "").lstrip("\n")


def _table(data: dict, name: str) -> str:
    plain = {k: v for k, v in data.items() if not _is_table(v) and not _is_tables(v)}
    text = "".join(f"{_key(k)} = {_value(v)}\n" for k, v in plain.items())
    for key, value in data.items():
        full = f"{name}.{_key(key)}" if name else _key(key)
        if _is_table(value):
            text += f"\n[{full}]\n{_table(value, full)}"
        elif _is_tables(value):
            text += "".join(f"\n[[{full}]]\n{_table(item, full)}" for item in value)
    return text


def _is_table(value) -> bool:
    return isinstance(value, dict)


def _is_tables(value) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _key(key) -> str:
    key = str(key)
    return key if key and all(c.isalnum() or c in "_-" for c in key) else json.dumps(key)


def _value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):  # an inline table inside a list, e.g. [tta] views = ["hflip", {five_crop = 224}]
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")
