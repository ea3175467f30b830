"""Vectors for JSON leaves: strings (token bags), numbers (level codes), constants."""

from __future__ import annotations

import hashlib
import re

import numpy as np
from numpy.typing import NDArray

from ._kernels import level_codes, string_codes
from .core import atom_bits, atoms

_TOKEN = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    """Lower-cased (casefolded) word tokens of ``text``."""
    return _TOKEN.findall(text.casefold())


def _normalize(rows: NDArray[np.float32]) -> NDArray[np.float32]:
    """Scale rows to unit norm in place (zero rows stay zero) and return them."""
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
    norms[norms == 0] = 1
    rows /= norms[:, None]
    return rows


def string_vectors(
    texts: list[str],
    dim: int,
    seed: int,
    token_weight: float,
    whole_weight: float,
    out: NDArray[np.float32] | None = None,
    rows: NDArray[np.int64] | None = None,
) -> NDArray[np.float32]:
    """Rows ``normalize(t * normalize(sum token atoms) + w * atom(whole string))``.

    Returns an array of shape (len(texts), dim), float32, or writes the rows into
    ``out[rows]`` and returns ``out``. Strings without word tokens (empty,
    punctuation) are their whole-string atom alone.
    """
    vocab: dict[str, int] = {}
    distinct: dict[str, int] = {}
    indptr, ids, whole = [0], [], []
    for text in texts:
        ids.extend([vocab.setdefault(token, len(vocab)) for token in tokens(text)])
        indptr.append(len(ids))
        whole.append(distinct.setdefault(text, len(distinct)))
    token_bits = atom_bits(list(vocab) or [""], dim, seed, "token", cache=True)
    whole_bits = atom_bits(list(distinct), dim, seed, "string")
    if out is None:
        out = np.empty((len(texts), dim), dtype=np.float32)
        rows = np.arange(len(texts))
    string_codes(
        out,
        rows,
        np.asarray(indptr, dtype=np.int64),
        np.asarray(ids, dtype=np.int64),
        token_bits,
        np.asarray(whole, dtype=np.int64),
        whole_bits,
        float(token_weight),
        float(whole_weight),
    )
    return out


def number_basis(
    dim: int, seed: int
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """The level-code base vector (shape (dim,)) and each coordinate's flip rank."""
    base = atoms(["number"], dim, seed, "number")[0]
    raw = hashlib.shake_256(f"{seed}\x1fnumber-rank".encode()).digest(4 * dim)
    rank = np.argsort(
        np.argsort(np.frombuffer(raw, dtype="<u4"), kind="stable"), kind="stable"
    )
    return base, rank.astype(np.float64)


def number_vectors(
    levels: NDArray[np.float64],
    base: NDArray[np.float32],
    rank: NDArray[np.float64],
    out: NDArray[np.float32] | None = None,
    rows: NDArray[np.int64] | None = None,
) -> NDArray[np.float32]:
    """Level (thermometer) codes for positions ``levels`` in [0, 1], shape (m,).

    The coordinate of rank ``r`` is negated by a fraction ``clip(t D / 2 - r, 0,
    1)`` of the way, so as ``t`` goes from 0 to 1 the first D/2 coordinates (in
    rank order) flip one after another: ``cos(v(s), v(t)) = 1 - |s - t|`` up to the
    one partly flipped coordinate, strictly decreasing in ``|s - t|``.
    Returns unit rows, an array of shape (m, D), float32 (or writes them into
    ``out[rows]`` and returns ``out``).
    """
    if out is None:
        out = np.empty((len(levels), base.shape[0]), dtype=np.float32)
        rows = np.arange(len(levels))
    level_codes(out, rows, np.ascontiguousarray(levels, dtype=np.float64), base, rank)
    return out


def number_levels(
    values: NDArray[np.float64],
    value_range: tuple[float, float] | None,
    log_scale: float,
) -> NDArray[np.float64]:
    """Map finite numbers to [0, 1]: linear over ``value_range`` (clipped outside).

    Without a range, ``t = 0.5 + 0.5 tanh(asinh(x) / log_scale)``: a signed log
    scale that needs no fitting. Halving before subtracting keeps ``hi - lo``
    finite even for ranges like (-1e308, 1e308).
    """
    if value_range is None:
        return 0.5 + 0.5 * np.tanh(np.arcsinh(values) / log_scale)
    lo, hi = value_range
    span = hi / 2 - lo / 2
    if span <= 0:
        return np.where(values > hi, 1.0, np.where(values < lo, 0.0, 0.5))
    return np.clip((values / 2 - lo / 2) / span, 0.0, 1.0)
