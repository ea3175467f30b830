"""Read algorithm definition files: which adapters to build, with which sweeps.

A definitions file is YAML::

    algorithms:
      - algorithm: hnswlib            # an adapter (``leanvec-bench algorithms``)
        name: hnswlib                 # optional label, default: the adapter name
        build: {M: [16, 32], ef_construction: 200}
        query: {ef: [10, 20, 40, 80]}
      - algorithm: faiss-flat

A list value in ``build`` or ``query`` is swept: every combination is run, one
index per build combination and one measurement per query combination. ``query``
may also be a list of mappings, each expanded the same way. ``disabled: true``
keeps an entry in the file without running it. Errors name the file, the line and
the key.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from .adapters import get_adapter

ENTRY_KEYS = ("algorithm", "name", "build", "query", "disabled")
DEFAULT_FILE = "definitions.yaml"
FULL_FILE = "definitions-full.yaml"


class DefinitionError(ValueError):
    """A definitions file that cannot be used; the message names file, line and key."""


@dataclasses.dataclass(frozen=True)
class Definition:
    """One index to build and the query arguments to measure it with."""

    algorithm: str
    name: str
    build_args: dict[str, Any]
    query_args: tuple[dict[str, Any], ...]
    where: str = ""


def shipped(file_name: str = DEFAULT_FILE) -> Path:
    """Path of a definitions file shipped with the ``bench`` package."""
    return Path(str(resources.files("bench") / file_name))


def expand(grid: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of a mapping whose list values are swept.

    ``{"a": [1, 2], "b": 3}`` gives ``[{"a": 1, "b": 3}, {"a": 2, "b": 3}]``;
    an empty mapping gives one empty combination.
    """
    keys = list(grid)
    choices = [v if isinstance(v, list) else [v] for v in grid.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*choices)]


def _line_index(text: str) -> dict[tuple, int]:
    """Map each key path, such as ``("algorithms", 2, "query")``, to its line."""
    import yaml

    lines: dict[tuple, int] = {}
    visited: set[int] = set()

    def walk(node: Any, path: tuple) -> None:
        lines[path] = node.start_mark.line + 1
        if id(node) in visited:  # an alias: its lines are known, do not re-expand
            return
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and key.value in seen:
                    raise DefinitionError(
                        f"line {line}: duplicate key {key.value!r} (first on line "
                        f"{seen[key.value]})")
                seen[getattr(key, "value", None)] = line
                child = path + (key.value,)
                walk(value, child)
                lines[child] = line
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))

    root = yaml.compose(text)
    if root is not None:
        walk(root, ())
    return lines


class _Reader:
    """Checks one parsed file and reports problems with file name and line."""

    def __init__(self, source: str, lines: dict[tuple, int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: tuple, message: str) -> DefinitionError:
        line = self.lines.get(path)
        while line is None and path:
            path = path[:-1]
            line = self.lines.get(path)
        at = f"{self.source}, line {line}" if line else self.source
        return DefinitionError(f"{at}: {message}")

    def entries(self, data: Any) -> list[Definition]:
        if not isinstance(data, dict) or "algorithms" not in data:
            raise self.fail((), "expected a mapping with the key 'algorithms'")
        extra = sorted(set(data) - {"algorithms"})
        if extra:
            raise self.fail((extra[0],), f"unknown top-level key {extra[0]!r}; valid: "
                            "algorithms")
        items = data["algorithms"]
        if not isinstance(items, list):
            raise self.fail(("algorithms",), "'algorithms' must be a list of entries")
        found: list[Definition] = []
        for i, item in enumerate(items):
            found.extend(self.entry(item, ("algorithms", i)))
        return found

    def entry(self, item: Any, path: tuple) -> list[Definition]:
        label = f"algorithms[{path[-1]}]"
        if not isinstance(item, dict) or "algorithm" not in item:
            raise self.fail(path, f"{label} must be a mapping with the key 'algorithm'")
        for key in item:
            if key not in ENTRY_KEYS:
                raise self.fail(path + (key,), f"{label}: unknown key {key!r}; valid: "
                                + ", ".join(ENTRY_KEYS))
        try:
            adapter = get_adapter(str(item["algorithm"]))
        except ValueError as exc:
            raise self.fail(path + ("algorithm",), f"{label}: {exc}") from None
        disabled = item.get("disabled", False)
        if not isinstance(disabled, bool):
            raise self.fail(path + ("disabled",), f"{label}: disabled must be true or "
                            f"false, got {disabled!r}")
        if disabled:
            return []
        builds = self.grid(item.get("build") or {}, path + ("build",), label, "build",
                           adapter.build_params)
        queries = self.queries(item.get("query"), path + ("query",), label,
                               adapter.query_params)
        name = str(item.get("name") or adapter.name)
        where = f"{self.source}, line {self.lines.get(path, '?')}"
        return [Definition(adapter.name, name, build, tuple(queries), where)
                for build in builds]

    def queries(self, value: Any, path: tuple, label: str, params: Mapping[str, Any],
                ) -> list[dict[str, Any]]:
        if value is None:
            return [{}]
        grids = value if isinstance(value, list) else [value]
        found: list[dict[str, Any]] = []
        for i, grid in enumerate(grids):
            where = path + (i,) if isinstance(value, list) else path
            found.extend(self.grid(grid, where, label, "query", params))
        return found or [{}]

    def grid(self, value: Any, path: tuple, label: str, kind: str,
             params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if not isinstance(value, dict):
            raise self.fail(path, f"{label}: {kind} must be a mapping of argument "
                            f"names to values, got {type(value).__name__}")
        for key, arg in value.items():
            if key not in params:
                raise self.fail(path + (key,), f"{label}: unknown {kind} argument "
                                f"{key!r}; valid: " + (", ".join(params) or "none"))
            values = arg if isinstance(arg, list) else [arg]
            if not values or any(isinstance(v, (dict, list)) for v in values):
                raise self.fail(path + (key,), f"{label}: {kind} argument {key!r} "
                                "must be a value or a non-empty list of values")
        return expand(value)


def parse(text: str, source: str = "<definitions>") -> list[Definition]:
    """Parse definitions from YAML ``text``; ``source`` names it in errors.

    Raises
    ------
    DefinitionError
        On invalid YAML, a duplicate key, an unknown key, algorithm or argument,
        or a wrong type; the message gives the source, the line and the key.
    """
    import yaml

    try:
        lines = _line_index(text)
        data = yaml.safe_load(text)
    except DefinitionError as exc:
        raise DefinitionError(f"{source}, {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f", line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DefinitionError(f"{source}{at}: not valid YAML: {problem}") from None
    return _Reader(source, lines).entries(data)


def load(path: str | os.PathLike | None = None) -> list[Definition]:
    """Read a definitions file (default: the shipped ``definitions.yaml``)."""
    path = shipped() if path is None else Path(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DefinitionError(f"cannot read definitions file {path}: "
                              f"{exc.strerror or exc}") from None
    return parse(text, source=os.fspath(path))


def select(definitions: Iterable[Definition], names: Iterable[str]) -> list[Definition]:
    """Keep definitions whose adapter or label is in ``names`` (empty: keep all).

    Raises ``ValueError`` listing the valid names when one matches nothing.
    """
    definitions = list(definitions)
    names = list(names)
    if not names:
        return definitions
    valid = sorted({d.algorithm for d in definitions} | {d.name for d in definitions})
    for name in names:
        if name not in valid:
            raise ValueError(f"unknown algorithm {name!r} for --algorithm; the "
                             "definitions have: " + ", ".join(valid))
    return [d for d in definitions if d.algorithm in names or d.name in names]
