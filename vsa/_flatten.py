"""Iterative flattening of JSON values into a node table, and path parsing.

The table lists every node of every record (objects, arrays, leaves) with its
parent, depth, key or position, schema path and weight. Encoding then works level
by level on the table, so nesting depth never touches Python's recursion limit.
"""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np

# Node kinds.
STRING, NUMBER, CONST, OBJECT, ARRAY = range(5)

# Names of the fixed vectors (namespace "const").
NAN, POS_INF, NEG_INF = "NaN", "Infinity", "-Infinity"
EMPTY_OBJECT, EMPTY_ARRAY = "{}", "[]"

_STEP = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


class RecordError(ValueError):
    """A record that cannot be encoded; names the record and the path."""


def nfc(text: str) -> str:
    """Unicode NFC form of ``text`` (fast path for ASCII)."""
    return text if text.isascii() else unicodedata.normalize("NFC", text)


def child_schema(schema: str, key: str | None) -> str:
    """Schema path of a member ``key`` (or of an array item when ``key`` is None)."""
    if key is None:
        return schema + "[]"
    return f"{schema}.{key}" if schema else key


def parse_path(path: str | tuple | list) -> list[str | int]:
    """Split ``"a.b[2].c"`` (or a sequence of keys and ints) into steps.

    Keys are NFC-normalised, as at encoding time. Raises ``ValueError`` for an
    empty or malformed path string.
    """
    if isinstance(path, (tuple, list)):
        return [s if isinstance(s, int) else nfc(str(s)) for s in path]
    if not isinstance(path, str) or not path:
        raise ValueError(f"path must be a non-empty string like 'a.b[0]', got {path!r}")
    steps: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _STEP.match(path, pos)
        if match is None or match.end() == pos:
            raise ValueError(f"path {path!r} is malformed at character {pos}")
        index, key = match.groups()
        steps.append(int(index) if index is not None else nfc(key))
        pos = match.end()
    return steps


def schema_of(steps: list[str | int]) -> str:
    """Schema path of parsed steps: positions become ``[]``."""
    schema = ""
    for step in steps:
        schema = child_schema(schema, None if isinstance(step, int) else step)
    return schema


class NodeTable:
    """Columns of the flattened nodes of a batch of records."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.depth: list[int] = []
        self.key: list[str | int | None] = []
        self.schema: list[str] = []
        self.kind: list[int] = []
        self.payload: list[object] = []
        self.roots: list[int] = []

    def __len__(self) -> int:
        return len(self.kind)

    def extend(self, other: NodeTable) -> None:
        """Append ``other`` (built with node numbers starting at len(self))."""
        self.parent += other.parent
        self.depth += other.depth
        self.key += other.key
        self.schema += other.schema
        self.kind += other.kind
        self.payload += other.payload
        self.roots += other.roots


def _number(value: float, nonfinite: str, schema: str) -> tuple[int, object]:
    try:
        number = float(value)
    except OverflowError:
        # An integer beyond float range is read as the infinity of its sign.
        number = math.inf if value > 0 else -math.inf
    if math.isfinite(number):
        return NUMBER, number
    if nonfinite == "error":
        raise RecordError(f"non-finite number {value!r} at {schema or '<root>'}")
    name = NAN if math.isnan(number) else (POS_INF if number > 0 else NEG_INF)
    return CONST, name


def flatten(
    record: object,
    base: int,
    table: NodeTable,
    root_schema: str = "",
    nonfinite: str = "symbol",
    max_array_length: int = 10_000,
) -> None:
    """Append the nodes of ``record`` to ``table``; node numbers start at ``base``.

    Duplicate keys after NFC normalisation keep the last value (as ``json`` does
    for literal duplicates). Raises :class:`RecordError` for an unsupported type,
    an array longer than ``max_array_length``, a container that holds itself
    (a circular reference; a container shared by siblings is fine) or, when
    ``nonfinite="error"``, a NaN or infinite number. On error ``table`` may hold
    part of the record, so pass a fresh table per record, as
    :class:`vsa.JSONEncoder` does.
    """
    stack = [(record, -1, None, root_schema, 0)]
    containers: dict[int, int] = {}  # table position -> id() of the container there
    seen: set[int] = set()
    while stack:
        value, parent, key, schema, depth = stack.pop()
        node = base + len(table.kind)
        table.parent.append(parent)
        table.depth.append(depth)
        table.key.append(key)
        table.schema.append(schema)
        if parent < 0:
            table.roots.append(node)
        kind, payload = _classify(value, schema, nonfinite, max_array_length)
        table.kind.append(kind)
        table.payload.append(payload)
        if kind in (OBJECT, ARRAY):
            _check_not_circular(value, parent, base, table, containers, seen, schema)
            containers[node - base] = id(value)
        if kind == OBJECT:
            for name, item in _members(value, schema).items():
                stack.append((item, node, name, child_schema(schema, name), depth + 1))
        elif kind == ARRAY:
            item_schema = child_schema(schema, None)
            for pos, item in enumerate(value):
                stack.append((item, node, pos, item_schema, depth + 1))


def _check_not_circular(
    value: object,
    parent: int,
    base: int,
    table: NodeTable,
    containers: dict[int, int],
    seen: set[int],
    schema: str,
) -> None:
    """Raise when ``value`` is one of its own ancestors (the walk up the parent
    chain runs only for a container met before, so shared ones cost little)."""
    ident = id(value)
    if ident in seen:
        pos = parent - base
        while pos >= 0:
            if containers.get(pos) == ident:
                raise RecordError(
                    f"circular reference at {schema or '<root>'}: a container "
                    "holds itself"
                )
            pos = table.parent[pos] - base
    seen.add(ident)


def _members(value: dict, schema: str) -> dict[str, object]:
    """Members with NFC keys; a later key equal after NFC replaces an earlier one."""
    members: dict[str, object] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise RecordError(
                f"object keys must be strings, got {type(name).__name__} {name!r} "
                f"at {schema or '<root>'}"
            )
        members[nfc(name)] = item
    return members


def _classify(
    value: object,
    schema: str,
    nonfinite: str,
    max_array_length: int,
) -> tuple[int, object]:
    if isinstance(value, str):
        return STRING, nfc(value)
    if isinstance(value, (bool, np.bool_)):
        return CONST, "true" if value else "false"
    if value is None:
        return CONST, "null"
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _number(value, nonfinite, schema)
    if isinstance(value, dict):
        return (OBJECT, None) if value else (CONST, EMPTY_OBJECT)
    if isinstance(value, (list, tuple)):
        if len(value) > max_array_length:
            raise RecordError(
                f"array of {len(value)} items at {schema or '<root>'} exceeds "
                f"max_array_length={max_array_length}; raise the limit to encode it"
            )
        return (ARRAY, None) if value else (CONST, EMPTY_ARRAY)
    raise RecordError(
        f"unsupported type {type(value).__name__} at {schema or '<root>'}; JSON "
        f"values are dict, list, str, int, float, bool or None"
    )
