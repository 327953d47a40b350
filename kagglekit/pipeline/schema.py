"""Declarative configuration: each key declared once (type, default, check, help), read by one reader.

A section is a frozen, keyword-only dataclass whose fields are declared with :func:`option` (a key and
its check), :func:`section` (a sub-table, itself such a dataclass) or a plain dataclass field (not read
from TOML, e.g. ``notes``). :func:`read_section` reads a TOML table into one: it refuses unknown keys
naming the closest allowed one, checks each given value (a missing one takes the declared default),
builds the dataclass by keyword and calls its ``validate(table)`` hook, if any, for the checks that
involve several keys. :func:`reference_rows` lists the declarations (section, key, type, default, help)
for the docs and ``--check``.

A default is written once, in its TOML form, in :func:`option`; the dataclass's default is that value
as the check converts it (``"imagenet"`` -> the (mean, std) pair), so Python construction and TOML
reading agree.

Every mistake raises :class:`PipelineConfigError` naming ``<section>.<key>``, e.g. ``tiling.stride: must
be an integer >= 1, got 'auto'``.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import math
from pathlib import Path

from kagglekit.errors import ConfigError

__all__ = ["Boolean", "Check", "Choice", "File", "Integer", "Invalid", "Name", "Number", "OneOf", "PipelineConfigError",
           "Rule", "String", "Table", "Tables", "Via", "lazy", "option", "read_section", "read_top", "reference_rows",
           "renamed", "section"]

logger = logging.getLogger("kagglekit.pipeline")

_DECL = "kagglekit.pipeline.schema"  # the metadata key of a declared field


class PipelineConfigError(ConfigError):
    """A pipeline configuration key is missing, unknown or has a value the pipeline cannot use."""


class Invalid(Exception):
    """A check's refusal: what the value must be (``must be ...``); the reader adds the key and the value."""


class Table:
    """One TOML table being read: its ``data``, its dotted ``name`` ("" at the top level), the folder
    ``base`` its files are relative to and the section class ``cls`` it is read into."""

    def __init__(self, data, name: str, allowed, base: Path | None = None, cls=None):
        if not isinstance(data, dict):
            raise PipelineConfigError(f"{name}: must be a table (a dict), got {type(data).__name__}")
        unknown = sorted(set(data) - set(allowed), key=str)
        if unknown:
            close = [c for key in unknown for c in difflib.get_close_matches(str(key), list(allowed), n=1)]
            hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
            where = f"{name}: unknown key(s)" if name else "unknown top-level key(s)"
            raise PipelineConfigError(f"{where} {unknown}{hint}; allowed keys are {sorted(allowed)}")
        self.data, self.name, self.base, self.cls = data, name, base if base is not None else Path.cwd(), cls

    def where(self, key: str) -> str:
        """``<section>.<key>`` (just ``key`` at the top level)."""
        return f"{self.name}.{key}" if self.name else key

    def fail(self, key: str, what: str):
        """Raise ``<section>.<key>: <what>, got <the value as given>``."""
        raise PipelineConfigError(f"{self.where(key)}: {what}, got {self.data.get(key)!r}")


# -- checks: each converts a TOML value to the config's form or raises Invalid("must be ...") ----------------


class Check:
    """A kind of value. ``convert(value, table)`` returns it as the config holds it or raises
    :class:`Invalid`; ``doc`` is its type in the reference table. ``read`` names the key on a refusal."""

    doc = "any"

    def convert(self, value, table: Table | None):
        return value

    def default(self, value):
        """The dataclass default of a declared TOML default (converted without a table)."""
        return value if value is None else self.convert(value, None)

    def read(self, value, table: Table, key: str):
        try:
            return self.convert(value, table)
        except Invalid as exc:
            raise PipelineConfigError(f"{table.where(key)}: {exc}, got {value!r}") from None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _choices(choices) -> tuple:
    return tuple(choices()) if callable(choices) else tuple(choices)


def lazy(module: str, name: str):
    """A callable that returns ``module.name`` when called: choices from a module imported only when read."""
    return lambda: getattr(importlib.import_module(module), name)


class Integer(Check):
    def __init__(self, minimum: int = 1):
        self.minimum = minimum
        self.doc = f"integer >= {minimum}"

    def convert(self, value, table):
        if not _is_int(value) or value < self.minimum:
            raise Invalid(f"must be an integer >= {self.minimum}")
        return value


class Number(Check):
    def __init__(self, low: float = -math.inf, high: float = math.inf, open_low: bool = False):
        self.low, self.high, self.open_low = low, high, open_low
        self.doc = f"number in {'(' if open_low else '['}{low}, {high}]"

    def convert(self, value, table):
        ok = _is_number(value) and math.isfinite(value)
        if not ok or value > self.high or value < self.low or (self.open_low and value == self.low):
            raise Invalid(f"must be a {self.doc}")
        return float(value)


class String(Check):
    """A string; ``choices`` (a tuple, or a callable that returns one) limits it."""

    def __init__(self, choices=None):
        self.choices = choices

    @property
    def doc(self) -> str:
        return "string" if self.choices is None else " | ".join(f'"{c}"' for c in _choices(self.choices))

    def default(self, value):
        return value  # a declared default is not checked: lazy choices are imported when a value is read

    def convert(self, value, table):
        if self.choices is not None and (not isinstance(value, str) or value not in _choices(self.choices)):
            raise Invalid(f"must be one of {list(_choices(self.choices))}")
        if not isinstance(value, str):
            raise Invalid("must be a string")
        return value


def Choice(*choices) -> String:  # noqa: N802  (reads as a type in a declaration)
    """A string out of ``choices``."""
    return String(choices)


def Boolean() -> Check:  # noqa: N802
    """true or false."""
    return Rule("boolean", (lambda value: isinstance(value, bool), "must be true or false"))


class OneOf(Check):
    """One of ``values``, compared with their type (``1`` is not ``true``); ``message``: ``must be ...``."""

    def __init__(self, values, message: str):
        self.values, self.message = tuple(values), message
        self.doc = " | ".join(toml_value(v) for v in self.values)

    def convert(self, value, table):
        if not any(type(value) is type(v) and value == v for v in self.values):
            raise Invalid(self.message)
        return value


class Rule(Check):
    """A check made of ``(accept, refusal)`` pairs, tried in turn: ``accept(value)`` false raises
    ``Invalid(refusal)``; ``hold`` converts an accepted value (default: as it is)."""

    def __init__(self, doc: str, *rules, hold=None):
        self.doc, self.rules, self.hold = doc, rules, hold

    def convert(self, value, table):
        for accept, refusal in self.rules:
            if not accept(value):
                raise Invalid(refusal)
        return value if self.hold is None else self.hold(value)


class Name(Check):
    """A non-empty string that names ``what`` (the refusal: ``must name <what>``)."""

    doc = "string"

    def __init__(self, what: str):
        self.what = what

    def accepts(self, value: str) -> bool:
        return bool(value.strip())

    def refusal(self) -> str:
        return f"must name {self.what}"

    def convert(self, value, table):
        if not isinstance(value, str) or not self.accepts(value):
            raise Invalid(self.refusal())
        return value


class File(Name):
    """A file named relative to the config's folder: a non-empty string, held as ``base / value``."""

    doc = "file"

    def convert(self, value, table):
        return (table.base if table is not None else Path.cwd()) / super().convert(value, table)


class Via:
    """A read-only attribute that reads ``key`` of the optional sub-section ``section`` (None without it):
    the flat name an older config class had for a key that is now in a sub-table."""

    def __init__(self, section: str, key: str):
        self.section, self.key = section, key

    def __get__(self, obj, owner=None):
        if obj is None:
            return self
        sub = getattr(obj, self.section)
        return None if sub is None else getattr(sub, self.key)


class Tables(Check):
    """An array of tables (``[[models]]``), each read into section ``cls``; at least one ``what``."""

    doc = "array of tables"

    def __init__(self, cls, what: str, example: str):
        self.cls, self.what, self.example = cls, what, example

    def read(self, value, table: Table, key: str):
        where = table.where(key)
        if value is None:
            raise PipelineConfigError(f"{where}: missing; add {self.example}")
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            raise PipelineConfigError(f"{where}: give at least one {self.what}, e.g. {self.example}")
        return tuple(read_section(self.cls, item, f"{where}[{i}]", table.base) for i, item in enumerate(value))


# -- declarations --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Declaration:
    """What :func:`option` / :func:`section` attach to a field: its check (or section class), its TOML
    default and its help line."""

    check: Check | None
    toml_default: object
    help: str
    section: type | None = None
    optional: bool = False


def option(default=dataclasses.MISSING, *, check: Check, help: str):  # noqa: A002  (help is the docs' word)
    """A key: its TOML ``default`` (none: required), the ``check`` its value passes and its ``help`` line."""
    declared = Declaration(check, default, help)
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata={_DECL: declared})
    return dataclasses.field(default=check.default(default), metadata={_DECL: declared})


def section(cls, *, help: str, optional: bool = False):  # noqa: A002
    """A sub-table read into ``cls``; ``optional``: None when the table is absent."""
    declared = Declaration(None, None, help, cls, optional)
    if optional:
        return dataclasses.field(default=None, metadata={_DECL: declared})
    return dataclasses.field(default_factory=cls, metadata={_DECL: declared})


def declared(cls) -> list[tuple[dataclasses.Field, Declaration]]:
    """The fields of section ``cls`` that TOML sets, with their declarations, in declaration order."""
    return [(f, f.metadata[_DECL]) for f in dataclasses.fields(cls) if _DECL in f.metadata]


def keys(cls) -> tuple[str, ...]:
    """The TOML keys section ``cls`` takes: its declared fields and its ``EXTRA_KEYS`` (read elsewhere)."""
    return tuple(f.name for f, _ in declared(cls)) + tuple(getattr(cls, "EXTRA_KEYS", ()))


# -- the reader ----------------------------------------------------------------------------------------------


def read_section(cls, data, name: str = "", base: Path | None = None, **values):
    """Read the TOML table ``data`` (named ``name``, files relative to ``base``) into section ``cls``.

    Unknown keys are refused with the closest allowed one; each given value passes its check; a missing
    one takes its default (a missing required one is refused by its check); ``values`` are fields set by
    the caller (``notes``). Then ``cls.validate(table)``, if defined, checks what involves several keys
    and returns the section, possibly replaced.
    """
    table = Table(data, name, keys(cls), base, cls)
    for f, decl in declared(cls):
        values[f.name] = _read_field(table, f, decl)
    made = cls(**values)
    validate = getattr(made, "validate", None)
    return validate(table) or made if validate is not None else made


def _read_field(table: Table, f: dataclasses.Field, decl: Declaration):
    given = f.name in table.data
    if decl.section is not None:
        if not given and decl.optional:
            return None
        return read_section(decl.section, table.data.get(f.name, {}), table.where(f.name), table.base)
    value = table.data.get(f.name)
    if not given and f.default is not dataclasses.MISSING:
        return f.default
    if value is None and given and f.default is None:
        return None  # a dict's explicit None for an unset optional key
    return decl.check.read(value, table, f.name)


# -- renamed keys --------------------------------------------------------------------------------------------


def _place(path: str) -> str:
    head, _, _ = path.rpartition(".")
    return f"in [{head}]" if head else "at the top level"


def _spelling(path: str) -> str:
    head, _, key = path.rpartition(".")
    return f"[{head}] {key}" if head else f"top-level {key}"


def renamed(data: dict, renames) -> tuple[dict, tuple[str, ...]]:
    """``data`` with each old spelling of ``renames`` ((old dotted key, new dotted key), ...) moved to its
    new one, and a one-line note per old spelling found. Both given: refused. ``data`` is not changed."""
    notes = []
    for old, new in renames:
        old_parent, old_key = _parent(data, old)
        if old_parent is None or old_key not in old_parent:
            continue
        new_parent, new_key = _parent(data, new)
        if new_parent is None:
            continue  # the new place is not a table: its reader names that mistake
        if new_key in new_parent:
            short = new.rpartition(".")[0]
            raise PipelineConfigError(f"{new_key}: given both {_place(old)} and {_place(new)}; keep the "
                                      f"{f'[{short}]' if short else 'top-level'} one")
        data = _copy_path(data, old)
        value = _parent(data, old)[0].pop(old_key)
        data = _copy_path(data, new)
        _parent(data, new)[0][new_key] = value
        notes.append(f"config: {_spelling(old)} is the old spelling of {_spelling(new)}; it still works, "
                     f"but write {_spelling(new)}")
    for note in notes:
        logger.warning(note)
    return data, tuple(notes)


def read_top(cls, data: dict, base: Path | None = None):
    """A whole configuration of root section ``cls``: its ``RENAMED`` old spellings moved to the new ones
    (each noted in the result's ``notes``), then read by :func:`read_section`."""
    data, notes = renamed(data, getattr(cls, "RENAMED", ()))
    return read_section(cls, data, "", base, notes=notes)


def _parent(data: dict, path: str) -> tuple[dict | None, str]:
    """(the table that holds ``path``'s last key, that key); None when a table on the way is missing or not one."""
    *heads, key = path.split(".")
    for head in heads:
        data = data.get(head, {}) if isinstance(data, dict) else None
    return (data, key) if isinstance(data, dict) else (None, key)


def _copy_path(data: dict, path: str) -> dict:
    """``data`` with the tables on ``path`` copied (created where missing), so that the copy can change."""
    top = dict(data)
    node = top
    for head in path.split(".")[:-1]:
        node[head] = dict(node.get(head, {}))
        node = node[head]
    return top


# -- the reference table -------------------------------------------------------------------------------------


def toml_value(value) -> str:
    """``value`` as TOML writes it (``-`` for no value)."""
    if value is None or value is dataclasses.MISSING:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def reference_rows(cls, name: str = "", label: str = "top level"):
    """(table, key, type, default, help, field) of every key of section ``cls`` and its sub-tables, in
    declaration order, sub-tables last; ``table`` is ``label`` (``[name]``, ``[[name]]`` or ``top level``),
    ``field`` the declaring field (one object for a key that several sections share)."""
    rows, subs = [], []
    for f, decl in declared(cls):
        sub = f"{name}.{f.name}" if name else f.name
        if decl.section is not None:
            subs.append((decl.section, sub, f"[{sub}]"))
        elif isinstance(decl.check, Tables):
            subs.append((decl.check.cls, sub, f"[[{sub}]]"))
        else:
            required = decl.toml_default is dataclasses.MISSING
            rows.append((label, f.name, decl.check.doc, "required" if required else toml_value(decl.toml_default),
                         decl.help, f))
    for sub_cls, sub, sub_label in subs:
        rows.extend(reference_rows(sub_cls, sub, sub_label))
    return rows
