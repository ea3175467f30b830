"""LVQ: locally-adaptive vector quantization with a per-vector step and bias.

Each vector is stored relative to the global mean ``mean`` of the fitted data. With
``xc = (x - mean) / scale`` (``scale`` a power of two chosen at fit time so that
the float16 constants cannot overflow), one level of ``bits`` bits keeps

    bias = min_j xc_j (rounded down to float16)
    step = (max_j xc_j - bias) / (2**bits - 1) (rounded up to float16; 1 if 0)
    c_j  = round((xc_j - bias) / step)

so ``|xc_j - (step c_j + bias)| <= step / 2``. A second level of ``residual_bits``
bits codes the remaining error with ``delta = step / (2**residual_bits - 1)``:
``r_j = round((xc_j - step c_j - bias + step / 2) / delta)``, error ``<= delta / 2``.

Computing distances with the kernels of :mod:`leanvec._kernels.lvq`: take
``steps, biases = lvq.kernel_constants(codes)`` (float32, ``scale`` folded in), then

- inner product ``<q, xhat> = <q, lvq.mean> + lvq8_ip(q, codes.codes[i], steps[i],
  biases[i])`` (``lvq4_ip`` for 4 bits, ``lvq_residual_ip`` for both levels);
- squared L2 ``||q - xhat||^2 = lvq8_l2(q - lvq.mean, codes.codes[i], steps[i],
  biases[i])`` (``lvq4_l2``, ``lvq_residual_l2`` likewise);
- cosine: normalise the database before ``fit``/``encode`` and each query, then
  ``1 - <q, xhat>`` as above.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._validation import as_matrix
from .persistence import Saveable

logger = logging.getLogger(__name__)

__all__ = ["LVQ", "LVQCodes"]

_KIND = "leanvec.LVQ"
_BLOCK = 8192  # rows encoded at a time, blocks spread over the cores
# Largest centred, scaled magnitude accepted at encode time (float16 max is 65504).
_MAX_SCALED = 2.0**14


@dataclasses.dataclass
class LVQCodes:
    """Encoded vectors.

    Attributes
    ----------
    codes : array of shape (n, ceil(bits * dim / 8)), uint8
        First-level codes; 4-bit codes pack two a byte, even coordinates in the
        low nibble.
    steps : array of shape (n,), float16
    biases : array of shape (n,), float16
        Per-vector constants in the quantizer's scaled units.
    residual : array of shape (n, ceil(residual_bits * dim / 8)), uint8, or None
        Second-level codes (None for one level).
    """

    codes: NDArray[np.uint8]
    steps: NDArray[np.float16]
    biases: NDArray[np.float16]
    residual: NDArray[np.uint8] | None = None

    def __len__(self) -> int:
        return self.codes.shape[0]

    def take(self, ids: ArrayLike) -> LVQCodes:
        """Return the codes of rows ``ids`` (array of int)."""
        ids = np.asarray(ids, dtype=np.int64)
        residual = None if self.residual is None else self.residual[ids]
        return LVQCodes(self.codes[ids], self.steps[ids], self.biases[ids], residual)

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` for :func:`leanvec.persistence.nest`."""
        arrays = {"codes": self.codes, "steps": self.steps, "biases": self.biases}
        if self.residual is not None:
            arrays["residual"] = self.residual
        return {"n": len(self)}, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LVQCodes:
        """Inverse of :meth:`to_state`."""
        return cls(arrays["codes"], arrays["steps"], arrays["biases"],
                   arrays.get("residual"))


def pack_codes(codes: NDArray[np.uint8], bits: int) -> NDArray[np.uint8]:
    """Pack (n, dim) codes below ``2**bits`` into (n, ceil(bits * dim / 8)) bytes."""
    if bits == 8:
        return np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.shape[1] % 2:
        codes = np.pad(codes, ((0, 0), (0, 1)))
    return np.ascontiguousarray(codes[:, 0::2] | (codes[:, 1::2] << 4), dtype=np.uint8)


def unpack_codes(packed: NDArray[np.uint8], bits: int, dim: int) -> NDArray[np.uint8]:
    """Inverse of :func:`pack_codes`: return (n, dim) uint8 codes."""
    if bits == 8:
        return packed
    out = np.empty((packed.shape[0], 2 * packed.shape[1]), dtype=np.uint8)
    out[:, 0::2] = packed & 15
    out[:, 1::2] = packed >> 4
    return out[:, :dim]


def _round_f16(values: NDArray[np.float32], direction: float) -> NDArray[np.float16]:
    """Round to float16 toward ``direction`` (-inf: down, +inf: up)."""
    out = values.astype(np.float16)
    wrong = out.astype(np.float32) < values if direction > 0 else (
        out.astype(np.float32) > values)
    out[wrong] = np.nextafter(out[wrong], np.float16(direction))
    return out


def _check_bits(value: object, name: str, allowed: tuple[int, ...]) -> int:
    if isinstance(value, bool) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return int(value)


class LVQ(Saveable):
    """Locally-adaptive vector quantizer: per-vector scalar codes around the mean.

    Parameters
    ----------
    bits : {8, 4}
        Bits per coordinate of the first level.
    residual_bits : {0, 4, 8}
        Bits per coordinate of the optional second (residual) level; 0 for none.

    Attributes
    ----------
    mean : array of shape (dim,), float32
        Mean of the fitted data.
    scale : float
        Power of two dividing the centred data before coding (1.0 for data within
        [-1, 1] of the mean), so float16 steps and biases never overflow.

    Notes
    -----
    Encoding data far outside the fitted range (more than 16384 times the fitted
    data's largest deviation from the mean) raises ``ValueError`` instead of
    storing infinite float16 constants. A constant vector (after centring) whose
    value float16 holds exactly gets step 1 and is decoded exactly; other constant
    vectors get the tiny step that codes their float16 rounding error.
    """

    state_kind = _KIND

    def __init__(self, bits: int = 8, residual_bits: int = 0) -> None:
        self.bits = _check_bits(bits, "bits", (4, 8))
        self.residual_bits = _check_bits(residual_bits, "residual_bits", (0, 4, 8))
        self.mean: NDArray[np.float32] | None = None
        self.scale: float = 1.0

    @property
    def dim(self) -> int | None:
        """Features per vector, or None before :meth:`fit`."""
        return None if self.mean is None else self.mean.shape[0]

    @property
    def code_size(self) -> int:
        """Bytes of first-level codes per vector."""
        return math.ceil(self.bits * self._require_dim() / 8)

    @property
    def residual_size(self) -> int:
        """Bytes of second-level codes per vector (0 for one level)."""
        return math.ceil(self.residual_bits * self._require_dim() / 8)

    @property
    def bytes_per_vector(self) -> int:
        """Stored bytes per vector: both levels plus 4 bytes of float16 constants."""
        return self.code_size + self.residual_size + 4

    def fit(self, train: ArrayLike) -> LVQ:
        """Learn the mean and scale of ``train`` (array of shape (n, dim)).

        Returns ``self``.
        """
        train = as_matrix(train, "train")
        self.mean = train.mean(axis=0, dtype=np.float64).astype(np.float32)
        spread = float(np.abs(train - self.mean).max())
        self.scale = 2.0 ** math.ceil(math.log2(spread)) if spread > 0 else 1.0
        logger.debug("LVQ fitted on %d x %d, scale %g", *train.shape, self.scale)
        return self

    def encode(self, vectors: ArrayLike) -> LVQCodes:
        """Encode ``vectors`` (array of shape (n, dim)) into :class:`LVQCodes`."""
        dim = self._require_dim()
        vectors = as_matrix(vectors, "vectors", dim, allow_empty=True)
        starts = range(0, vectors.shape[0], _BLOCK)
        workers = min(len(starts), os.cpu_count() or 1)
        if workers > 1:  # numpy releases the GIL in the elementwise work
            with ThreadPoolExecutor(workers) as pool:
                parts = list(pool.map(
                    lambda s: self._encode_block(vectors[s:s + _BLOCK]), starts))
        else:
            parts = [self._encode_block(vectors[s:s + _BLOCK]) for s in starts]
        parts = parts or [self._encode_block(vectors)]
        residual = None
        if self.residual_bits:
            residual = np.concatenate([p.residual for p in parts])
        return LVQCodes(np.concatenate([p.codes for p in parts]),
                        np.concatenate([p.steps for p in parts]),
                        np.concatenate([p.biases for p in parts]), residual)

    def decode(self, codes: LVQCodes) -> NDArray[np.float32]:
        """Reconstruct vectors, array of shape (n, dim), float32, from ``codes``."""
        self._check_codes(codes)
        steps, biases = self._scaled_constants(codes)
        levels = unpack_codes(codes.codes, self.bits, self.dim).astype(np.float32)
        xc = levels * steps[:, None] + biases[:, None]
        if self.residual_bits:
            delta = steps / np.float32((1 << self.residual_bits) - 1)
            res = unpack_codes(codes.residual, self.residual_bits, self.dim)
            xc += res.astype(np.float32) * delta[:, None] - 0.5 * steps[:, None]
        return np.ascontiguousarray(xc * np.float32(self.scale) + self.mean)

    def kernel_constants(self, codes: LVQCodes,
                         ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """Return the kernels' ``(steps, biases)``: float32 arrays of shape (n,).

        They include ``scale``, so ``mean + steps[i] * c + biases[i]`` is the
        first-level reconstruction of row ``i``.
        """
        self._check_codes(codes)
        steps, biases = self._scaled_constants(codes)
        s = np.float32(self.scale)
        return np.ascontiguousarray(steps * s), np.ascontiguousarray(biases * s)

    # -- persistence -------------------------------------------------------------

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return ``(meta, arrays)`` for :func:`leanvec.persistence.nest`."""
        self._require_dim()
        meta = {"bits": self.bits, "residual_bits": self.residual_bits,
                "scale": self.scale}
        return meta, {"mean": self.mean}

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LVQ:
        """Inverse of :meth:`to_state`."""
        lvq = cls(meta["bits"], meta["residual_bits"])
        lvq.scale = float(meta["scale"])
        lvq.mean = np.ascontiguousarray(arrays["mean"], dtype=np.float32)
        return lvq

    # -- helpers -----------------------------------------------------------------

    def _require_dim(self) -> int:
        if self.mean is None:
            raise ValueError("this LVQ is not fitted: call fit(train) first")
        return self.mean.shape[0]

    def _scaled_constants(self, codes: LVQCodes):
        return codes.steps.astype(np.float32), codes.biases.astype(np.float32)

    def _encode_block(self, block: NDArray[np.float32]) -> LVQCodes:
        xc = (block - self.mean) / np.float32(self.scale)
        self._check_range(xc)
        levels = (1 << self.bits) - 1
        low = xc.min(axis=1)
        high = xc.max(axis=1)
        biases = _round_f16(low, -np.inf)
        b32 = biases.astype(np.float32)
        steps = _round_f16((high - b32) / np.float32(levels), np.inf)
        steps[steps == 0] = 1.0  # a constant vector that float16 holds exactly
        s32 = steps.astype(np.float32)

        raw = np.rint((xc - b32[:, None]) / s32[:, None])
        codes = np.clip(raw, 0, levels).astype(np.uint8)
        residual = None
        if self.residual_bits:
            residual = self._encode_residual(xc, codes, s32, b32)
        return LVQCodes(pack_codes(codes, self.bits), steps, biases, residual)

    def _encode_residual(self, xc, codes, s32, b32) -> NDArray[np.uint8]:
        rlevels = (1 << self.residual_bits) - 1
        delta = s32 / np.float32(rlevels)
        first = codes.astype(np.float32) * s32[:, None] + b32[:, None]
        raw = np.rint((xc - first + 0.5 * s32[:, None]) / delta[:, None])
        return pack_codes(np.clip(raw, 0, rlevels).astype(np.uint8), self.residual_bits)

    def _check_range(self, xc: NDArray[np.float32]) -> None:
        if xc.size and float(np.abs(xc).max()) > _MAX_SCALED:
            raise ValueError(
                "vectors lie too far from the fitted data for float16 step and bias "
                f"(largest deviation {float(np.abs(xc).max()) * self.scale:.3g}, "
                f"fitted scale {self.scale:.3g}); refit the LVQ on data that covers "
                "this range"
            )

    def _check_codes(self, codes: LVQCodes) -> None:
        dim = self._require_dim()
        if not isinstance(codes, LVQCodes):
            raise TypeError(f"codes must be LVQCodes, got {type(codes).__name__}")
        n = codes.codes.shape[0]
        want = (n, self.code_size)
        if codes.codes.ndim != 2 or codes.codes.shape != want:
            raise ValueError(f"codes.codes has shape {codes.codes.shape}, but this "
                             f"LVQ ({self.bits} bits, dim {dim}) expects {want}")
        if codes.steps.shape != (n,) or codes.biases.shape != (n,):
            raise ValueError(f"codes.steps and codes.biases must have shape ({n},), "
                             f"got {codes.steps.shape} and {codes.biases.shape}")
        has_res = codes.residual is not None
        if has_res != bool(self.residual_bits) or (
                has_res and codes.residual.shape != (n, self.residual_size)):
            got = None if not has_res else codes.residual.shape
            want = (n, self.residual_size) if self.residual_bits else None
            raise ValueError(f"codes.residual has shape {got}, but this LVQ expects "
                             f"{want}")
