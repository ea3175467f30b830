"""One-file persistence for everything fitted: a header, raw arrays, a checksum.

Layout of a ``.lvec`` file::

    magic  b"LEANVEC\\x00"               8 bytes
    format version                       uint32, little endian
    header length                        uint64, little endian
    header                               UTF-8 JSON: kind, meta, arrays
    array bytes                          each array C-ordered, in header order
    sha256 of everything above           32 bytes

``meta`` is any JSON-serialisable dict; ``arrays`` maps names to numpy arrays of
numeric dtypes. Objects that compose others (an index holding a projection and a
quantizer) nest the parts' states under prefixed names: see :func:`nest` and
:func:`unnest`. Writes go to a temporary file in the same folder and are renamed
into place, so a crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path

import numpy as np

MAGIC = b"LEANVEC\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temporary file the usual permissions (``mkstemp`` makes it
    readable by its owner only), then rename it to ``path`` in one step."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def save_state(path: str | os.PathLike, kind: str, meta: dict,
               arrays: dict[str, np.ndarray]) -> Path:
    """Write ``kind``, ``meta`` and ``arrays`` to ``path`` atomically."""
    path = Path(path)
    specs, blobs = [], []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"array {name!r} has unsupported dtype {arr.dtype}")
        specs.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape)})
        blobs.append(arr.tobytes())
    header = json.dumps({"kind": kind, "meta": meta, "arrays": specs}).encode("utf-8")

    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in (_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *blobs):
                out.write(chunk)
                digest.update(chunk)
            out.write(digest.digest())
            out.flush()
            os.fsync(out.fileno())
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_state(path: str | os.PathLike, kind: str | tuple[str, ...] | None = None,
               ) -> tuple[str, dict, dict[str, np.ndarray]]:
    """Read a file written by :func:`save_state`; return ``(kind, meta, arrays)``.

    Raises ``ValueError`` naming the file when it is foreign, from a newer format,
    truncated, corrupt, or of another ``kind`` than expected.
    """
    path = Path(path)
    data = path.read_bytes()
    if len(data) < _PREFIX.size + 32 or not data.startswith(MAGIC):
        raise ValueError(f"{path} is not a leanvec file (bad magic or too short)")
    _, version, header_len = _PREFIX.unpack_from(data)
    if version > FORMAT_VERSION:
        raise ValueError(f"{path} has format version {version}; this leanvec reads "
                         f"up to {FORMAT_VERSION}: upgrade leanvec")
    body, checksum = data[:-32], data[-32:]
    if hashlib.sha256(body).digest() != checksum:
        raise ValueError(f"{path} is truncated or corrupt (checksum mismatch)")
    header = _parse_header(body, header_len, path)
    if kind is not None and header["kind"] not in (kind if isinstance(kind, tuple) else (kind,)):
        raise ValueError(f"{path} holds a {header['kind']!r}, expected {kind!r}")

    arrays, offset = {}, _PREFIX.size + header_len
    for spec in header["arrays"]:
        dtype, shape = _array_spec(spec, path)
        count = int(np.prod(shape, dtype=np.int64))
        end = offset + count * dtype.itemsize
        if end > len(body):
            raise ValueError(f"{path} is truncated (array {spec['name']!r})")
        arrays[spec["name"]] = np.frombuffer(body, dtype, count, offset).reshape(
            shape).copy()
        offset = end
    if offset != len(body):
        raise ValueError(f"{path} is corrupt: {len(body) - offset} bytes after the "
                         "last array")
    return header["kind"], header["meta"], arrays


def _parse_header(body: bytes, header_len: int, path: Path) -> dict:
    """The JSON header, checked for the keys and types :func:`load_state` reads."""
    start = _PREFIX.size
    if start + header_len > len(body):
        raise ValueError(f"{path} is corrupt: header length {header_len} runs past "
                         "the end of the file")
    try:
        header = json.loads(body[start:start + header_len].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is corrupt: unreadable header ({exc})") from None
    if (not isinstance(header, dict) or not isinstance(header.get("kind"), str)
            or not isinstance(header.get("meta"), dict)
            or not isinstance(header.get("arrays"), list)):
        raise ValueError(f"{path} is corrupt: the header needs 'kind' (string), "
                         "'meta' (object) and 'arrays' (list)")
    return header


def _array_spec(spec: object, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    """Dtype and shape of one header array entry, or ValueError naming the file."""
    try:
        dtype = np.dtype(spec["dtype"])
        shape = tuple(int(n) for n in spec["shape"])
        name_ok = isinstance(spec["name"], str)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path} is corrupt: bad array entry {spec!r} ({exc})") from None
    if not name_ok or dtype.kind not in "biuf" or any(n < 0 for n in shape):
        raise ValueError(f"{path} is corrupt: bad array entry {spec!r}")
    return dtype, shape


class Saveable:
    """``save`` / ``load`` for a class with ``to_state`` and ``from_state``.

    Subclasses set ``state_kind``, the name written into the file and checked on
    reading.
    """

    state_kind: str = ""

    def save(self, path: str | os.PathLike) -> Path:
        """Write the fitted object to ``path`` (one file, written atomically)."""
        meta, arrays = self.to_state()
        return save_state(path, self.state_kind, meta, arrays)

    @classmethod
    def load(cls, path: str | os.PathLike):
        """Read an object written by :meth:`save`.

        Raises
        ------
        ValueError
            When the file is not a leanvec file, is truncated or corrupt, or holds
            another kind of object.
        """
        _, meta, arrays = load_state(path, cls.state_kind)
        return cls.from_state(meta, arrays)


def nest(prefix: str, meta: dict, arrays: dict[str, np.ndarray],
         part_meta: dict, part_arrays: dict[str, np.ndarray]) -> None:
    """Store a part's state inside a parent's ``meta`` and ``arrays`` under ``prefix``."""
    meta[prefix] = part_meta
    for name, arr in part_arrays.items():
        arrays[f"{prefix}/{name}"] = arr


def unnest(prefix: str, meta: dict, arrays: dict[str, np.ndarray],
           ) -> tuple[dict, dict[str, np.ndarray]]:
    """Inverse of :func:`nest`: return the part's ``(meta, arrays)``."""
    start = f"{prefix}/"
    return meta[prefix], {k[len(start):]: v for k, v in arrays.items() if k.startswith(start)}
