"""JSONEncoder: any JSON value to one D-dimensional vector by MBAT binding, and back."""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from leanvec.persistence import load_state, save_state

from . import _flatten as fl
from ._checks import as_rows, check_float, check_int, check_range, check_records
from ._kernels import bind_rows
from ._leaves import (
    _normalize,
    number_basis,
    number_levels,
    number_vectors,
    string_vectors,
)
from .core import (
    ROLE_KINDS,
    HadamardRole,
    Role,
    atoms,
    check_power_of_two,
    make_role,
    similarity,
)

logger = logging.getLogger(__name__)

_KIND = "vsa.JSONEncoder"
_CONFIG = (
    "dim",
    "seed",
    "roles",
    "soft",
    "string_tokens",
    "string_whole",
    "nonfinite",
    "max_array_length",
    "max_candidates",
    "log_scale",
)
# Nodes encoded together: a (nodes, dim) float32 work array of ~16 MiB.
_CHUNK_BYTES = 1 << 24
# Memory the cache of generated role matrices may hold.
_ROLE_CACHE_BYTES = 1 << 28
_CONST_VALUES = {"true": True, "false": False, "null": None}

Progress = Callable[[int, "int | None"], None]


class JSONEncoder:
    """Encode JSON values as unit vectors whose fields can be read back.

    An object is ``normalize(sum_k w_k Q_k enc(v_k) + soft sum_k w_k enc(v_k))``
    with ``Q_k`` the orthogonal role of key ``k``; an array is
    ``normalize(sum_i w Q_seq^(i+1) enc(v_i) + soft sum_i w enc(v_i))``. Strings
    are bags of word-token atoms plus an atom for the whole string; numbers are
    level codes over their path's range; true, false, null, ``{}`` and ``[]``
    are fixed atoms. The Notes give the policy for every awkward input.

    Parameters
    ----------
    dim : int
        Vector dimension D; a power of two with ``roles="hadamard"``.
    seed : int
        Seed of every codebook (atoms, roles, number code).
    roles : {"hadamard", "dense", "sign"}
        Role matrices; see :func:`vsa.core.make_role`. With ``"sign"``
        (element-wise MAP binding, for comparison) array positions use one sign
        vector per position instead of powers (a sign diagonal squares to I).
    soft : float
        Weight of the unbound term (0 turns soft mode off).
    weights : dict of str to float, optional
        Per-path weights, keyed by schema path (``"address.city"``,
        ``"children[].name"``); default 1.
    ranges : dict of str to (float, float), optional
        Number ranges per schema path; they take precedence over :meth:`fit`.
    string_tokens, string_whole : float
        Weights of the token bag and of the whole-string atom in a string.
    nonfinite : {"symbol", "error"}
        NaN, Infinity and -Infinity (and integers beyond float range, read as
        infinities) get fixed atoms of their own, or raise.
    max_array_length : int
        Longer arrays raise :class:`vsa.RecordError`.
    max_candidates : int
        Most frequent leaf values kept per path by :meth:`fit` for :meth:`query`.
    log_scale : float
        Scale of the signed-log map used for numbers at paths with no range.

    Notes
    -----
    Policies. Keys and strings are NFC-normalised, so NFC and NFD spellings are
    the same key; when that makes two keys of one object equal, the later one
    wins, as for literal duplicate keys in ``json``. Lone surrogates are valid
    symbols (hashed with ``surrogatepass``). Numbers are compared as float64:
    2**53 and 2**53 + 1 encode identically, ``1`` and ``1.0`` too, but ``true``
    is never the number 1. Numbers outside their path's range are clipped to its
    ends; at paths with no range, ``t = 0.5 + 0.5 tanh(asinh(x) / log_scale)``.
    NaN and infinities follow ``nonfinite``; the output never holds NaN.
    Traversal is iterative: any nesting depth of Python objects encodes (parsing
    JSON *text* with ``json`` stops near the recursion limit; json2vec reports
    that line as an error). Empty objects and arrays are fixed atoms, not zero
    vectors. Arrays longer than ``max_array_length`` raise rather than allocate
    unbounded memory. Paths join keys with ``.``, so a key containing ``.`` or
    ``[`` shares its schema path with the nested spelling for weights and ranges.
    """

    def __init__(
        self,
        dim: int = 1024,
        seed: int = 0,
        *,
        roles: Literal["hadamard", "dense", "sign"] = "hadamard",
        soft: float = 0.0,
        weights: dict[str, float] | None = None,
        ranges: dict[str, tuple[float, float]] | None = None,
        string_tokens: float = 1.0,
        string_whole: float = 1.0,
        nonfinite: Literal["symbol", "error"] = "symbol",
        max_array_length: int = 10_000,
        max_candidates: int = 10_000,
        log_scale: float = 8.0,
    ) -> None:
        self.dim = check_int(dim, "dim", 2)
        self.seed = check_int(seed, "seed", 0)
        if roles not in ROLE_KINDS:
            raise ValueError(f"roles must be one of {ROLE_KINDS}, got {roles!r}")
        if roles == "hadamard":
            check_power_of_two(self.dim)
        if nonfinite not in ("symbol", "error"):
            raise ValueError(
                f"nonfinite must be 'symbol' or 'error', got {nonfinite!r}"
            )
        self.roles = roles
        self.nonfinite = nonfinite
        self.soft = check_float(soft, "soft")
        self.string_tokens = check_float(string_tokens, "string_tokens")
        self.string_whole = check_float(string_whole, "string_whole")
        self.log_scale = check_float(log_scale, "log_scale", positive=True)
        self.max_array_length = check_int(max_array_length, "max_array_length", 1)
        self.max_candidates = check_int(max_candidates, "max_candidates", 1)
        self.weights = {
            fl.nfc(k): check_float(v, f"weights[{k!r}]")
            for k, v in (weights or {}).items()
        }
        self.ranges = {fl.nfc(k): check_range(v, k) for k, v in (ranges or {}).items()}
        self.fitted_ranges_: dict[str, tuple[float, float]] = {}
        self.memory_: dict[str, list] = {}
        self._roles: dict[str, Role] = {}
        self._basis = number_basis(self.dim, self.seed)
        self._memory_vectors: dict[str, NDArray[np.float32]] = {}

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        records: Iterable,
        progress: Progress | None = None,
        on_error: Literal["raise", "skip"] = "raise",
        on_skip: Callable[[int, Exception], None] | None = None,
    ) -> JSONEncoder:
        """Learn number ranges and candidate values per path from ``records``.

        Parameters
        ----------
        records : iterable of JSON values
        progress : callable(done, total), optional
        on_error, on_skip
            As in :meth:`encode_iter`: raise :class:`vsa.RecordError` on a record
            that cannot be encoded, or skip it and call ``on_skip(number, error)``.

        Returns
        -------
        self
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        check_records(records)
        lows: dict[str, float] = {}
        highs: dict[str, float] = {}
        counts: dict[str, Counter] = {}
        total = len(records) if hasattr(records, "__len__") else None
        for i, record in enumerate(records):
            try:
                table = self._flatten_one(record, i, 0)
            except fl.RecordError as exc:
                if on_error == "raise":
                    raise
                if on_skip is not None:
                    on_skip(i, exc)
                continue
            for kind, schema, payload in zip(table.kind, table.schema, table.payload):
                self._observe(kind, schema, payload, lows, highs, counts)
            if progress is not None and (i + 1) % 1000 == 0:
                progress(i + 1, total)
        self.fitted_ranges_ = {s: (lows[s], highs[s]) for s in lows}
        self.memory_ = {
            s: [_value_of(key) for key, _ in c.most_common(self.max_candidates)]
            for s, c in counts.items()
        }
        self._memory_vectors = {}
        return self

    @staticmethod
    def _observe(
        kind: int, schema: str, payload: object, lows: dict, highs: dict, counts: dict
    ) -> None:
        if kind == fl.NUMBER:
            lows[schema] = min(lows.get(schema, payload), payload)
            highs[schema] = max(highs.get(schema, payload), payload)
        elif kind == fl.STRING or (kind == fl.CONST and payload in _CONST_VALUES):
            pass
        else:
            return
        counts.setdefault(schema, Counter())[(kind, payload)] += 1

    def range_of(self, schema: str) -> tuple[float, float] | None:
        """The number range used at ``schema`` (given, else fitted, else None)."""
        return self.ranges.get(schema, self.fitted_ranges_.get(schema))

    # ---------------------------------------------------------------- encoding
    def encode(
        self,
        records: Iterable,
        progress: Progress | None = None,
    ) -> NDArray[np.float32]:
        """Encode JSON values (parsed: dict, list, str, int, float, bool, None).

        Returns
        -------
        array of shape (n_records, dim), float32
            Unit rows (no NaN, whatever the input).

        Raises
        ------
        RecordError
            (a ValueError) naming the record number and path of the first record
            that cannot be encoded.
        """
        chunks = list(self.encode_iter(records, progress=progress))
        if not chunks:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(chunks)

    def encode_iter(
        self,
        records: Iterable,
        on_error: Literal["raise", "skip"] = "raise",
        on_skip: Callable[[int, Exception], None] | None = None,
        progress: Progress | None = None,
    ) -> Iterator[NDArray[np.float32]]:
        """Yield encoded chunks (float32 arrays of shape (m, dim)) as records arrive.

        With ``on_error="skip"`` a record that cannot be encoded is left out and
        ``on_skip(record_number, error)`` is called; the chunks then hold only the
        encodable records, in order.
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        check_records(records)
        total = len(records) if hasattr(records, "__len__") else None
        budget = max(1024, _CHUNK_BYTES // (4 * self.dim))
        table, done = fl.NodeTable(), 0
        for i, record in enumerate(records):
            try:
                table.extend(self._flatten_one(record, i, len(table)))
            except fl.RecordError as exc:
                if on_error == "raise":
                    raise
                if on_skip is not None:
                    on_skip(i, exc)
            if len(table) >= budget:
                done += len(table.roots)
                yield self._encode_table(table)
                table = fl.NodeTable()
                if progress is not None:
                    progress(done, total)
        if table.roots:
            yield self._encode_table(table)
            if progress is not None:
                progress(done + len(table.roots), total)

    def encode_values(self, values: Sequence, path: str = "") -> NDArray[np.float32]:
        """Encode ``values`` as if found at ``path`` (its ranges and weights apply).

        Returns an array of shape (len(values), dim), float32; this is what
        :meth:`query` compares an unbound field with.
        """
        schema = fl.schema_of(fl.parse_path(path)) if path else ""
        table = fl.NodeTable()
        for i, value in enumerate(values):
            table.extend(self._flatten_one(value, i, len(table), schema))
        if not table.roots:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode_table(table)

    def _flatten_one(
        self, record: object, number: int, base: int, schema: str = ""
    ) -> fl.NodeTable:
        part = fl.NodeTable()
        try:
            fl.flatten(
                record, base, part, schema, self.nonfinite, self.max_array_length
            )
        except fl.RecordError as exc:
            raise fl.RecordError(f"record {number}: {exc}") from None
        return part

    def _encode_table(self, table: fl.NodeTable) -> NDArray[np.float32]:
        x = np.zeros((len(table), self.dim), dtype=np.float32)
        kind = np.asarray(table.kind, dtype=np.int8)
        self._fill_leaves(table, kind, x)
        depth = np.asarray(table.depth, dtype=np.int64)
        parent = np.asarray(table.parent, dtype=np.int64)
        weight = np.array(
            [self.weights.get(s, 1.0) for s in table.schema]
            if self.weights
            else np.ones(len(table)),
            dtype=np.float32,
        )

        # Children are complete before their parents: walk up from the deepest level.
        order = np.argsort(depth, kind="stable")
        starts = np.searchsorted(depth[order], np.arange(depth.max() + 2))
        for level in range(int(depth.max()), 0, -1):
            nodes = order[starts[level] : starts[level + 1]]
            self._bind_level(nodes, table.key, parent, weight, x)
            parents = np.unique(parent[nodes])
            x[parents] = _normalize(x[parents])
        return x[np.asarray(table.roots)]

    def _fill_leaves(self, table: fl.NodeTable, kind: NDArray, x: NDArray) -> None:
        strings = np.flatnonzero(kind == fl.STRING)
        if strings.size:
            texts = [table.payload[i] for i in strings]
            string_vectors(
                texts,
                self.dim,
                self.seed,
                self.string_tokens,
                self.string_whole,
                out=x,
                rows=strings,
            )
        consts = np.flatnonzero(kind == fl.CONST)
        if consts.size:
            names = [table.payload[i] for i in consts]
            unique = sorted(set(names))
            vectors = atoms(unique, self.dim, self.seed, "const")
            x[consts] = vectors[[unique.index(n) for n in names]]
        numbers = np.flatnonzero(kind == fl.NUMBER)
        if numbers.size:
            self._number_rows(numbers, table, x)

    def _number_rows(self, rows: NDArray, table: fl.NodeTable, x: NDArray) -> None:
        groups: dict[str, list[int]] = {}
        for j, i in enumerate(rows):
            groups.setdefault(table.schema[i], []).append(j)
        levels = np.empty(rows.size, dtype=np.float64)
        for schema, members in groups.items():
            values = np.array(
                [table.payload[rows[j]] for j in members], dtype=np.float64
            )
            levels[members] = number_levels(
                values, self.range_of(schema), self.log_scale
            )
        number_vectors(levels, *self._basis, out=x, rows=rows)

    def _bind_level(
        self, nodes: NDArray, keys: list, parent: NDArray, weight: NDArray, x: NDArray
    ) -> None:
        members: dict[str, list[int]] = {}
        items: dict[int, list[int]] = {}
        for i in nodes:
            key = keys[i]
            (items if isinstance(key, int) else members).setdefault(key, []).append(i)
        for key, group in members.items():
            self._add_bound(self._role("k", key), np.asarray(group), parent, weight, x)
        if items and self.roles == "sign":
            for pos, group in items.items():
                role = self._role("p", str(pos))
                self._add_bound(role, np.asarray(group), parent, weight, x)
        elif items:
            self._horner(items, parent, weight, x)

    def _add_bound(
        self, role: Role, group: NDArray, parent: NDArray, weight: NDArray, x: NDArray
    ) -> None:
        if isinstance(role, HadamardRole):
            bind_rows(x, group, parent[group], weight, role.signs, self.soft, False)
            return
        values = x[group] * weight[group, None]
        # Parents within one key group are distinct, so fancy "+=" is safe.
        x[parent[group]] += role.apply(values)
        if self.soft:
            x[parent[group]] += self.soft * values

    def _horner(
        self, items: dict[int, list[int]], parent: NDArray, weight: NDArray, x: NDArray
    ) -> None:
        # sum_i Q^(i+1) v_i = Q(v_0 + Q(v_1 + Q(v_2 + ...))): one product a position.
        seq = self._role("s", "seq")
        for pos in sorted(items, reverse=True):
            group = np.asarray(items[pos])
            rows = parent[group]
            if isinstance(seq, HadamardRole):
                bind_rows(x, group, rows, weight, seq.signs, 0.0, True)
            else:
                x[rows] = seq.apply(x[rows] + x[group] * weight[group, None])
        if self.soft:
            for group in items.values():
                group = np.asarray(group)
                x[parent[group]] += self.soft * x[group] * weight[group, None]

    def _role(self, space: str, name: str) -> Role:
        full = f"{space}:{name}"
        role = self._roles.get(full)
        if role is None:
            if len(self._roles) >= self._role_cache_size():
                self._roles.clear()
            role = make_role(full, self.dim, self.seed, self.roles)
            self._roles[full] = role
        return role

    def _role_cache_size(self) -> int:
        # Dense roles hold D x D floats (4 MiB at D = 1024): keep fewer of them.
        per_role = {"hadamard": 3 * self.dim, "dense": self.dim**2, "sign": self.dim}
        return max(16, _ROLE_CACHE_BYTES // (4 * per_role[self.roles]))

    # ---------------------------------------------------------------- read-back
    def unbind_path(
        self, vectors: ArrayLike, path: str | Sequence
    ) -> NDArray[np.float32]:
        """Unbind ``vectors`` (shape (dim,) or (m, dim)) along ``path``.

        ``y = Q_kn^T ... Q_k1^T v`` for the keys and positions of ``path``
        (``"address.city"``, ``"children[0].name"`` or a sequence of keys and
        ints). Returns float32 of the same shape.
        """
        rows = as_rows(vectors, self.dim)
        for step in fl.parse_path(path):
            rows = self._unbind_step(step, rows)
        return rows[0] if np.ndim(vectors) == 1 else rows

    def _unbind_step(self, step: str | int, rows: NDArray) -> NDArray:
        if not isinstance(step, int):
            return self._role("k", step).apply_t(rows)
        if self.roles == "sign":
            return self._role("p", str(step)).apply_t(rows)
        seq = self._role("s", "seq")
        for _ in range(step + 1):
            rows = seq.apply_t(rows)
        return rows

    def query(
        self,
        vectors: ArrayLike,
        path: str | Sequence,
        candidates: Sequence | None = None,
        k: int = 5,
        threshold: float | None = None,
    ) -> list:
        """Read the value at ``path`` back from encoded ``vectors``.

        Parameters
        ----------
        vectors : array of shape (dim,) or (m, dim)
        path : str or sequence
            ``"address.city"``, ``"children[0]"``, ...
        candidates : sequence of JSON values, optional
            Values to choose from; default the values :meth:`fit` saw at this
            path (positions read as ``[]``).
        k : int
            Best candidates returned.
        threshold : float, optional
            Minimum cosine for a candidate to count as present; default
            ``3 / sqrt(dim)``.

        Returns
        -------
        list of (value, cosine), best first, for a 1-d input; a list of such lists
        for a 2-d input. Empty when nothing clears the threshold.
        """
        k = check_int(k, "k", 1)
        steps = fl.parse_path(path)
        values, cands = self._candidates(steps, candidates)
        scores = similarity(self.unbind_path(as_rows(vectors, self.dim), steps), cands)
        limit = 3.0 / math.sqrt(self.dim) if threshold is None else threshold
        results = []
        for row in np.atleast_2d(scores):
            best = np.argsort(-row, kind="stable")[:k]
            results.append(
                [(values[j], float(row[j])) for j in best if row[j] >= limit]
            )
        return results[0] if np.ndim(vectors) == 1 else results

    def _candidates(
        self,
        steps: list,
        candidates: Sequence | None,
    ) -> tuple[list, NDArray[np.float32]]:
        schema = fl.schema_of(steps)
        if candidates is not None:
            values = list(candidates)
            return values, self.encode_values(values, _schema_path(schema))
        if schema not in self.memory_:
            raise ValueError(
                f"no candidate values for path {schema!r}: call fit() on records "
                f"holding it, or pass candidates="
            )
        if schema not in self._memory_vectors:
            self._memory_vectors[schema] = self.encode_values(
                self.memory_[schema], _schema_path(schema)
            )
        return self.memory_[schema], self._memory_vectors[schema]

    # ------------------------------------------------------------- persistence
    def save(self, path: str | os.PathLike) -> None:
        """Save the configuration, ranges and item memory to one file (atomic)."""
        meta = {name: getattr(self, name) for name in _CONFIG}
        meta.update(
            weights=self.weights,
            ranges={k: list(v) for k, v in self.ranges.items()},
            fitted_ranges={k: list(v) for k, v in self.fitted_ranges_.items()},
            memory=self.memory_,
        )
        save_state(path, _KIND, meta, {})

    @classmethod
    def load(cls, path: str | os.PathLike) -> JSONEncoder:
        """Read an encoder written by :meth:`save`; raises ValueError if foreign."""
        _, meta, _ = load_state(path, _KIND)
        encoder = cls(
            **{name: meta[name] for name in _CONFIG},
            weights=meta["weights"],
            ranges={k: tuple(v) for k, v in meta["ranges"].items()},
        )
        encoder.fitted_ranges_ = {k: tuple(v) for k, v in meta["fitted_ranges"].items()}
        encoder.memory_ = meta["memory"]
        return encoder


def _schema_path(schema: str) -> str:
    # encode_values takes a path; "[]" positions of a schema read as position 0.
    return schema.replace("[]", "[0]")


def _value_of(key: tuple[int, object]) -> object:
    kind, payload = key
    if kind == fl.CONST:
        return _CONST_VALUES[payload]
    if kind == fl.NUMBER and payload.is_integer() and abs(payload) < 2**53:
        return int(payload)
    return payload
