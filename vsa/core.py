"""MBAT primitives: seeded atoms, orthogonal role matrices, bind, bundle, clean-up.

Every random object is derived from a stable hash of ``(seed, namespace, name)``
(SHAKE-256 of the UTF-8 bytes), so the same name gives the same vector in every
process and on every machine, without storing it.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._kernels import hadamard_roles

RoleKind = Literal["hadamard", "dense", "sign"]
ROLE_KINDS = ("hadamard", "dense", "sign")
# Rounds of (sign diagonal, Walsh-Hadamard) in a structured role.
HADAMARD_ROUNDS = 3
# Hash digests kept by atoms(..., cache=True); cleared when full.
_DIGEST_CACHE_SIZE = 1 << 16
_DIGESTS: dict[tuple[int, str, str, int], bytes] = {}


def _name_bytes(seed: int, namespace: str, name: str) -> bytes:
    # surrogatepass: a lone surrogate (valid in Python and JSON strings) hashes too.
    text = f"{seed}\x1f{namespace}\x1f{name}"
    return text.encode("utf-8", "surrogatepass")


def stable_hash(name: str, seed: int = 0, namespace: str = "") -> int:
    """A 64-bit hash of ``name`` that is the same in every process and machine."""
    digest = hashlib.blake2b(_name_bytes(seed, namespace, name), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def _sign_bits(
    names: Sequence[str],
    n_bits: int,
    seed: int,
    namespace: str,
) -> NDArray[np.uint8]:
    """Pseudo-random bits of shape (len(names), n_bits), one row per name."""
    n_bytes = (n_bits + 7) // 8
    raw = b"".join(
        hashlib.shake_256(_name_bytes(seed, namespace, name)).digest(n_bytes)
        for name in names
    )
    packed = np.frombuffer(raw, dtype=np.uint8).reshape(len(names), n_bytes)
    return np.unpackbits(packed, axis=1, count=n_bits)


def _digest(seed: int, namespace: str, name: str, n_bytes: int, cache: bool) -> bytes:
    key = (seed, namespace, name, n_bytes)
    found = _DIGESTS.get(key) if cache else None
    if found is None:
        found = hashlib.shake_256(_name_bytes(seed, namespace, name)).digest(n_bytes)
        if cache:
            if len(_DIGESTS) >= _DIGEST_CACHE_SIZE:
                _DIGESTS.clear()
            _DIGESTS[key] = found
    return found


def atoms(
    names: Sequence[str],
    dim: int,
    seed: int = 0,
    namespace: str = "atom",
    cache: bool = False,
) -> NDArray[np.float32]:
    """Seeded random unit vectors for symbols.

    Parameters
    ----------
    names : sequence of str
        Symbols; any Python string, lone surrogates included.
    dim : int
        Dimension D.
    seed : int
        Codebook seed; a different seed gives independent vectors.
    namespace : str
        Separates codebooks that must not share vectors (tokens, roles, ...).
    cache : bool
        Keep the names' hash digests (D/8 bytes each, at most 65 536 names) for
        later calls: worth it for a recurring vocabulary such as word tokens.

    Returns
    -------
    array of shape (len(names), dim), float32
        Bipolar rows with entries +-1/sqrt(dim), so every row has norm 1 and two
        different names have cosine about N(0, 1/dim).
    """
    dim = _check_dim(dim)
    packed = atom_bits(names, dim, seed, namespace, cache)
    # One gather through a byte -> 8 signs table instead of unpack, cast, scale.
    signs = _byte_signs(dim)[packed].reshape(len(packed), packed.shape[1] * 8)
    return np.ascontiguousarray(signs[:, :dim])


def atom_bits(
    names: Sequence[str],
    dim: int,
    seed: int = 0,
    namespace: str = "atom",
    cache: bool = False,
) -> NDArray[np.uint8]:
    """The atoms of :func:`atoms` packed: array of shape (len(names), ceil(dim / 8)).

    Bit ``7 - j % 8`` of byte ``j // 8`` set means coordinate ``j`` is
    ``+1/sqrt(dim)``, clear means ``-1/sqrt(dim)`` (``numpy.unpackbits`` order).
    """
    names = list(names)
    n_bytes = (dim + 7) // 8
    raw = b"".join(_digest(seed, namespace, name, n_bytes, cache) for name in names)
    return np.frombuffer(raw, dtype=np.uint8).reshape(len(names), n_bytes)


def _byte_signs(dim: int) -> NDArray[np.float32]:
    bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1)
    return (bits.astype(np.float32) * 2 - 1) / np.float32(np.sqrt(dim))


def atom(
    name: str,
    dim: int,
    seed: int = 0,
    namespace: str = "atom",
) -> NDArray[np.float32]:
    """One seeded unit vector, shape (dim,), float32; see :func:`atoms`."""
    return atoms([name], dim, seed, namespace)[0]


def _check_dim(dim: int) -> int:
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
    return int(dim)


def check_power_of_two(dim: int) -> None:
    """Raise ValueError naming the nearest valid sizes unless ``dim`` is 2**k."""
    if dim & (dim - 1):
        lower = 1 << (dim.bit_length() - 1)
        raise ValueError(
            f"dim must be a power of two for 'hadamard' roles, got {dim}; use "
            f"dim={lower} or {2 * lower}, or roles='dense'"
        )


class Role(abc.ABC):
    """A seeded orthogonal D x D matrix used to bind values to a key or position.

    Use :func:`make_role` to build one. ``apply`` computes ``Q x`` (bind) and
    ``apply_t`` computes ``Q^T x`` (unbind); both take float32 rows of shape
    (m, dim) and return a new array.
    """

    kind: str = ""

    def __init__(self, dim: int) -> None:
        self.dim = dim

    @abc.abstractmethod
    def apply(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``Q x`` for rows ``x`` of shape (m, dim)."""

    @abc.abstractmethod
    def apply_t(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """``Q^T x`` for rows ``x`` of shape (m, dim)."""

    def matrix(self) -> NDArray[np.float32]:
        """The role as a dense array of shape (dim, dim), float32."""
        return self.apply(np.eye(self.dim, dtype=np.float32)).T.copy()


class HadamardRole(Role):
    """``Q = prod_r (H diag(s_r) / sqrt(D))``: O(D log D) per row, D a power of two."""

    kind = "hadamard"

    def __init__(self, signs: NDArray[np.float32]) -> None:
        super().__init__(signs.shape[1])
        self.signs = signs

    def apply(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.array(x, dtype=np.float32, order="C", copy=True)
        hadamard_roles(out, self.signs, False)
        return out

    def apply_t(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        out = np.array(x, dtype=np.float32, order="C", copy=True)
        hadamard_roles(out, self.signs, True)
        return out


class DenseRole(Role):
    """A dense Haar-random orthogonal matrix (QR of a Gaussian, signs folded in)."""

    kind = "dense"

    def __init__(self, q: NDArray[np.float32]) -> None:
        super().__init__(q.shape[0])
        self.q = q

    def apply(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(x, dtype=np.float32) @ self.q.T

    def apply_t(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(x, dtype=np.float32) @ self.q

    def matrix(self) -> NDArray[np.float32]:
        return self.q.copy()


class SignRole(Role):
    """A random sign diagonal: element-wise (MAP-style) binding, commutative."""

    kind = "sign"

    def __init__(self, signs: NDArray[np.float32]) -> None:
        super().__init__(signs.shape[0])
        self.signs = signs

    def apply(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(x, dtype=np.float32) * self.signs

    def apply_t(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.apply(x)


def _haar(dim: int, seed: int) -> NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    # Folding sign(diag(R)) into Q makes the distribution exactly Haar.
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)
    return q.astype(np.float32)


def make_role(
    name: str,
    dim: int,
    seed: int = 0,
    kind: RoleKind = "hadamard",
) -> Role:
    """The orthogonal role matrix for ``name``.

    Parameters
    ----------
    name : str
        Key or role name; the same (name, dim, seed, kind) always gives the same
        matrix.
    dim : int
        Dimension D; a power of two for ``kind="hadamard"``.
    seed : int
        Codebook seed.
    kind : {"hadamard", "dense", "sign"}
        ``"hadamard"``: three rounds of random sign diagonal and Walsh-Hadamard
        transform (D bits per round, O(D log D) per product, the default).
        ``"dense"``: Haar-random orthogonal matrix (4 D^2 bytes, O(D^2)); its
        Gaussian draw uses numpy's PCG64 stream, stable across machines for a given
        numpy release line. ``"sign"``: a random +-1 diagonal, i.e. element-wise
        MAP binding, commutative; kept for comparison.

    Raises
    ------
    ValueError
        If ``kind`` is unknown, or ``dim`` is not a power of two for "hadamard".
    """
    dim = _check_dim(dim)
    if kind == "hadamard":
        check_power_of_two(dim)
        bits = _sign_bits([name], HADAMARD_ROUNDS * dim, seed, "role")
        signs = bits.reshape(HADAMARD_ROUNDS, dim).astype(np.float32) * 2 - 1
        return HadamardRole(np.ascontiguousarray(signs))
    if kind == "dense":
        return DenseRole(_haar(dim, stable_hash(name, seed, "dense-role")))
    if kind == "sign":
        return SignRole(atoms([name], dim, seed, "sign-role")[0] * np.sqrt(dim))
    raise ValueError(f"kind must be one of {ROLE_KINDS}, got {kind!r}")


def _rows(x: ArrayLike, dim: int, name: str) -> tuple[NDArray[np.float32], bool]:
    with np.errstate(over="ignore"):  # values beyond float32 become inf: named below
        arr = np.asarray(x, dtype=np.float32)
    single = arr.ndim == 1
    arr = arr[None, :] if single else arr
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(
            f"{name} must have shape (dim,) or (m, dim) with dim={dim}, got "
            f"shape {np.shape(x)}"
        )
    if not np.isfinite(arr).all():
        raise ValueError(
            f"{name} holds NaN or infinite values (or values beyond the float32 range)"
        )
    return arr, single


def bind(role: Role, x: ArrayLike) -> NDArray[np.float32]:
    """``Q x`` for a vector of shape (dim,) or rows of shape (m, dim), float32."""
    arr, single = _rows(x, role.dim, "x")
    out = role.apply(arr)
    return out[0] if single else out


def unbind(role: Role, y: ArrayLike) -> NDArray[np.float32]:
    """``Q^T y``: exactly undoes :func:`bind` (up to float32 rounding)."""
    arr, single = _rows(y, role.dim, "y")
    out = role.apply_t(arr)
    return out[0] if single else out


def bundle(
    vectors: ArrayLike, weights: ArrayLike | None = None, *, quantize: bool = False
) -> NDArray:
    """Superpose vectors (rows of an array of shape (m, dim)).

    Parameters
    ----------
    vectors : array of shape (m, dim)
        Any real dtype; summed in float64, so integer inputs never overflow.
    weights : array of shape (m,), optional
        Per-row weights (default all 1).
    quantize : bool
        False: return the sum scaled to unit norm, float32 (a zero sum stays
        zero). True: return the bipolar majority, int8 +-1, with the tie rule
        *a zero sum gives +1*, so ``bundle([[1,-1,1,-1],[-1,-1,1,1]],
        quantize=True)`` is ``[1,-1,1,1]``.

    NaN or infinity in ``vectors`` or ``weights`` raises ``ValueError``; values
    near the float64 limit are summed after an exact power-of-two scaling.

    Returns
    -------
    array of shape (dim,)
    """
    arr = np.asarray(vectors, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"vectors must be a non-empty 2-d array (m, dim), got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        raise ValueError("vectors hold NaN or infinite values")
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (arr.shape[0],):
            raise ValueError(
                f"weights must have shape ({arr.shape[0]},), got {w.shape}"
            )
        if not np.isfinite(w).all():
            raise ValueError("weights hold NaN or infinite values")
        arr = _power_of_two_scaled(arr) * _power_of_two_scaled(w)[:, None]
    arr = _power_of_two_scaled(arr)
    total = arr.sum(axis=0)
    if quantize:
        return np.where(total >= 0, 1, -1).astype(np.int8)
    norm = np.linalg.norm(total)
    return (total / norm if norm > 0 else total).astype(np.float32)


def _power_of_two_scaled(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """``x`` scaled by a power of two to a largest magnitude in [0.5, 1).

    The scaling is exact and float64 rounding is scale-free, so sums scale exactly:
    neither directions, signs nor exact zeros (the tie rule) change, and no sum
    of rows can overflow.
    """
    peak = float(np.abs(x).max()) if x.size else 0.0
    if peak == 0.0:
        return x
    return x * np.ldexp(1.0, -int(np.frexp(peak)[1]))


def similarity(a: ArrayLike, b: ArrayLike) -> float | NDArray[np.float64]:
    """Cosine similarity, computed in float64 (integer inputs never overflow).

    Two vectors of shape (dim,) give a float; rows of shape (m, dim) and (n, dim)
    give an array of shape (m, n). A zero vector has similarity 0 to everything.
    Rows are divided by their largest magnitude first, so values near the float64
    limits neither overflow nor underflow. NaN or infinity raises ``ValueError``.
    """
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape[-1] != y.shape[-1] or x.ndim > 2 or y.ndim > 2:
        raise ValueError(
            f"a and b must be vectors or matrices of the same width, got shapes "
            f"{x.shape} and {y.shape}"
        )
    for name, arr in (("a", x), ("b", y)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} holds NaN or infinite values")
    x, y = _unit_scale(x), _unit_scale(y)
    nx = np.linalg.norm(x, axis=-1)
    ny = np.linalg.norm(y, axis=-1)
    if x.ndim == 1 and y.ndim == 1:
        return float(x @ y / (nx * ny)) if nx > 0 and ny > 0 else 0.0
    dots = np.atleast_2d(x) @ np.atleast_2d(y).T
    norms = np.outer(np.atleast_1d(nx), np.atleast_1d(ny))
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


def _unit_scale(x: NDArray[np.float64]) -> NDArray[np.float64]:
    """Rows divided by their largest magnitude (zero rows unchanged)."""
    if x.size == 0:
        return x
    peak = np.abs(x).max(axis=-1, keepdims=True)
    return np.divide(x, peak, out=np.zeros_like(x), where=peak > 0)


class ItemMemory:
    """Clean-up memory: labelled unit vectors, queried by cosine similarity.

    Parameters
    ----------
    dim : int
        Dimension D of stored vectors.
    """

    def __init__(self, dim: int) -> None:
        self.dim = _check_dim(dim)
        self.labels: list = []
        self._vectors = np.zeros((0, self.dim), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, labels: Sequence, vectors: ArrayLike) -> None:
        """Store ``vectors`` (array of shape (len(labels), dim)) under ``labels``."""
        rows, _ = _rows(vectors, self.dim, "vectors")
        if rows.shape[0] != len(labels):
            raise ValueError(f"got {len(labels)} labels but {rows.shape[0]} vectors")
        wide = _unit_scale(rows.astype(np.float64))  # no overflow in the norms
        norms = np.linalg.norm(wide, axis=1, keepdims=True)
        wide = np.divide(wide, norms, out=np.zeros_like(wide), where=norms > 0)
        rows = wide.astype(np.float32)
        self._vectors = np.vstack([self._vectors, rows])
        self.labels.extend(labels)

    def cleanup(
        self,
        vector: ArrayLike,
        k: int = 1,
        threshold: float = -1.0,
    ) -> list[tuple[object, float]]:
        """The ``k`` stored labels most similar to ``vector`` (shape (dim,)).

        Returns ``[(label, cosine), ...]`` best first, keeping only cosines above
        ``threshold``; empty when the memory is empty.
        """
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        query, _ = _rows(vector, self.dim, "vector")
        if not self.labels:
            return []
        scores = similarity(self._vectors, query)[:, 0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            (self.labels[i], float(scores[i])) for i in order if scores[i] > threshold
        ]
