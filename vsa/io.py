"""Reading JSON records with line-accurate errors, and writing vector files."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from numpy.typing import NDArray

from leanvec.persistence import publish

logger = logging.getLogger(__name__)

Format = Literal["auto", "json", "jsonl"]


@dataclass
class ReadState:
    """What a :func:`read_records` pass saw: source lines, errors, a stop flag.

    ``lines[i]`` is the 1-based line where record ``i`` starts; ``errors`` holds
    ``"NAME:LINE:COLUMN: message"`` strings; set ``stop`` to end the pass early.
    """

    name: str = "-"
    lines: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stop: bool = False


def _parse_error(exc: Exception, text: str) -> tuple[int, int, str]:
    if isinstance(exc, json.JSONDecodeError):
        return exc.lineno, exc.colno, exc.msg
    if isinstance(exc, UnicodeDecodeError):
        return 1, exc.start + 1, f"invalid UTF-8 ({exc.reason})"
    if not isinstance(exc, RecursionError):
        return 1, 1, str(exc)
    # RecursionError: the json module parses recursively.
    depth = max(text.count("["), text.count("{"))
    return (
        1,
        1,
        (
            f"nesting too deep for the JSON parser (up to {depth} levels; "
            f"Python's json stops near {sys.getrecursionlimit()})"
        ),
    )


_BOM = b"\xef\xbb\xbf"


def _long_int(text: str) -> int | float:
    """An integer literal; beyond Python's digit limit, the float it rounds to
    (infinity: the policy for integers beyond the float range)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def loads(text: str) -> object:
    """``json.loads``, also for integer literals longer than Python's 4,300-digit
    limit for ``int(str)`` (retried with a parser that reads them as floats)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise
    except ValueError as exc:
        if "digits" not in str(exc):
            raise
        return json.loads(text, parse_int=_long_int)


def _loads(raw: bytes) -> object:
    return loads(raw.decode("utf-8"))


def read_records(
    source: BinaryIO,
    state: ReadState,
    fmt: Format = "jsonl",
    on_error: Literal["stop", "skip"] = "stop",
    progress: Callable[[int], None] | None = None,
) -> Iterator[object]:
    """Yield parsed records from a binary stream of JSON Lines or one JSON document.

    ``fmt="json"`` reads one document: an array yields its items, anything else
    is one record. ``fmt="jsonl"`` yields one record per non-blank line. A line
    that is not valid JSON (or not UTF-8, or nested beyond what Python's json
    parser handles) is logged as ``NAME:LINE:COLUMN: message`` in
    ``state.errors``; with ``on_error="stop"`` reading ends there, with
    ``"skip"`` it goes on. ``progress(n_bytes)`` is called as bytes are read.
    A UTF-8 byte order mark at the start of the stream is ignored.
    """
    if fmt == "json":
        yield from _read_document(source, state)
        return
    for number, raw in enumerate(source, start=1):
        if progress is not None:
            progress(len(raw))
        if number == 1:  # a byte order mark, written by some Windows tools
            raw = raw.removeprefix(_BOM)
        if state.stop:
            return
        if not raw.strip():
            continue
        try:
            record = _loads(raw.rstrip(b"\r\n"))
        except (ValueError, RecursionError) as exc:
            line, column, message = _parse_error(exc, raw.decode("utf-8", "replace"))
            _report(state, f"{state.name}:{number + line - 1}:{column}: {message}")
            if on_error == "stop":
                return
            continue
        state.lines.append(number)
        yield record


def _read_document(source: BinaryIO, state: ReadState) -> Iterator[object]:
    raw = source.read()
    raw = raw.removeprefix(_BOM)
    try:
        document = _loads(raw)
    except (ValueError, RecursionError) as exc:
        line, column, message = _parse_error(exc, raw.decode("utf-8", "replace"))
        _report(state, f"{state.name}:{line}:{column}: {message}")
        return
    for record in document if isinstance(document, list) else [document]:
        if state.stop:
            return
        state.lines.append(1)
        yield record


def _report(state: ReadState, message: str) -> None:
    state.errors.append(message)
    logger.debug("%s", message)


def guess_format(path: str) -> Literal["json", "jsonl"]:
    """``"json"`` for a ``.json`` file, else ``"jsonl"`` (stdin included)."""
    return "json" if path.lower().endswith(".json") else "jsonl"


def write_vectors(path: str | os.PathLike, vectors: NDArray[np.float32]) -> Path:
    """Write (n, dim) float32 vectors to ``.npy`` or ``.hdf5``/``.h5`` atomically.

    HDF5 files hold one dataset named ``vectors``. Raises ``ValueError`` for any
    other suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npy", ".hdf5", ".h5"):
        raise ValueError(f"output must end in .npy, .hdf5 or .h5, got {str(path)!r}")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix, dir=path.parent or "."
    )
    os.close(fd)
    try:
        if suffix == ".npy":
            np.save(tmp, vectors)
        else:
            import h5py

            with h5py.File(tmp, "w") as out:
                out.create_dataset("vectors", data=vectors)
        publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_vectors(path: str | os.PathLike) -> NDArray[np.float32]:
    """Read vectors written by :func:`write_vectors` (or any 2-d real ``.npy``).

    Raises ``ValueError`` naming the file for another suffix, a missing or
    non-array ``vectors`` dataset, or an array that is not 2-d with a real
    (integer or float) dtype.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        data = np.load(path, allow_pickle=False)
    elif suffix in (".hdf5", ".h5"):
        import h5py

        with h5py.File(path, "r") as src:
            if "vectors" not in src:
                raise ValueError(f"{path} has no dataset named 'vectors'")
            node = src["vectors"]
            if not isinstance(node, h5py.Dataset):
                raise ValueError(f"{path}: 'vectors' is a group, expected an array")
            data = node[()]
    else:
        raise ValueError(
            f"vectors must be a .npy, .hdf5 or .h5 file, got {str(path)!r}"
        )
    if data.ndim != 2 or data.dtype.kind not in "iuf":
        raise ValueError(
            f"{path} must hold a 2-d array of real numbers (n, dim), got dtype "
            f"{data.dtype} and shape {data.shape}"
        )
    with np.errstate(over="ignore"):  # the encoder names values beyond float32
        return data.astype(np.float32, copy=False)
