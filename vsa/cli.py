"""json2vec: encode JSON records as vectors, read fields back, find similar records."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ._flatten import RecordError
from .encoder import JSONEncoder
from .io import (
    ReadState,
    guess_format,
    loads,
    read_records,
    read_vectors,
    write_vectors,
)

logger = logging.getLogger("json2vec")

# Inputs larger than this get a progress bar (when tqdm is installed).
_PROGRESS_BYTES = 1 << 20


def _pair(text: str, sep: str, what: str) -> tuple[str, str]:
    path, found, value = text.rpartition(sep)
    if not found or not path:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return path, value


def _weight(text: str) -> tuple[str, float]:
    path, value = _pair(text, "=", "PATH=WEIGHT")
    try:
        return path, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"weight must be a number in {text!r}"
        ) from None


def _range(text: str) -> tuple[str, tuple[float, float]]:
    path, value = _pair(text, "=", "PATH=LOW:HIGH")
    low, _, high = value.partition(":")
    try:
        return path, (float(low), float(high))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"range must be LOW:HIGH in {text!r}"
        ) from None


def _add_encoder_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("encoder (ignored with --encoder)")
    group.add_argument("--dim", type=int, default=1024, help="vector dimension")
    group.add_argument("--seed", type=int, default=0, help="codebook seed")
    group.add_argument(
        "--roles",
        choices=("hadamard", "dense", "sign"),
        default="hadamard",
        help="role matrices",
    )
    group.add_argument("--soft", type=float, default=0.0, help="unbound term weight")
    group.add_argument(
        "--weight",
        type=_weight,
        action="append",
        default=[],
        metavar="PATH=W",
        help="weight of a path (repeatable)",
    )
    group.add_argument(
        "--range",
        type=_range,
        action="append",
        default=[],
        metavar="PATH=LOW:HIGH",
        help="number range of a path",
    )


def _add_input_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", help="JSON Lines or .json file, or - for stdin")
    parser.add_argument(
        "--format",
        choices=("auto", "json", "jsonl"),
        default="auto",
        help="input format; auto: .json is one document, else lines",
    )
    parser.add_argument(
        "--on-error",
        choices=("stop", "skip"),
        default="stop",
        help="on a bad line: stop (keeping what was encoded) or skip",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``json2vec``."""
    parser = argparse.ArgumentParser(
        prog="json2vec",
        description=__doc__,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser(
        "encode",
        help="encode records to .npy or .hdf5",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_input_options(enc)
    enc.add_argument("-o", "--output", required=True, help="OUT.npy or OUT.hdf5")
    enc.add_argument("--encoder", help="encoder file saved by 'json2vec fit'")
    _add_encoder_options(enc)

    fit = sub.add_parser(
        "fit",
        help="learn ranges and candidates; save an encoder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_input_options(fit)
    fit.add_argument("-o", "--output", required=True, help="encoder file to write")
    fit.add_argument(
        "--max-candidates",
        type=int,
        default=10_000,
        help="values kept per path for query",
    )
    _add_encoder_options(fit)

    query = sub.add_parser(
        "query",
        help="read a field back from vectors",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    query.add_argument("encoder", help="encoder file saved by 'json2vec fit'")
    query.add_argument("vectors", help=".npy or .hdf5 vectors")
    query.add_argument("path", help="field path, e.g. address.city or children[0]")
    query.add_argument("-k", "--count", type=int, default=3, help="answers per row")
    query.add_argument("--rows", help="comma-separated row numbers (default all)")
    query.add_argument("--candidates", help="JSON array of candidate values")

    similar = sub.add_parser(
        "similar",
        help="records most similar to a query",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    similar.add_argument("encoder", help="encoder file saved by 'json2vec fit'")
    _add_input_options(similar)
    similar.add_argument("--query", required=True, help="the query record as JSON")
    similar.add_argument("-k", "--count", type=int, default=5, help="records returned")
    return parser


@contextlib.contextmanager
def _progress(path: str, disabled: bool) -> Iterator[Callable[[int], None] | None]:
    size = os.path.getsize(path) if path != "-" and os.path.isfile(path) else 0
    bar = None
    if not disabled and size > _PROGRESS_BYTES:
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            bar = tqdm(
                total=size, unit="B", unit_scale=True, desc=os.path.basename(path)
            )
    try:
        yield bar.update if bar is not None else None
    finally:
        if bar is not None:
            bar.close()


@contextlib.contextmanager
def _open(path: str) -> Iterator:
    if path == "-":
        yield sys.stdin.buffer
    else:
        with open(path, "rb") as handle:
            yield handle


def _make_encoder(args: argparse.Namespace) -> JSONEncoder:
    if getattr(args, "encoder", None):
        return JSONEncoder.load(args.encoder)
    return JSONEncoder(
        args.dim,
        args.seed,
        roles=args.roles,
        soft=args.soft,
        weights=dict(args.weight),
        ranges=dict(args.range),
        max_candidates=getattr(args, "max_candidates", 10_000),
    )


def _skipper(state: ReadState, on_error: str) -> Callable[[int, Exception], None]:
    """Record a record-level error with its line; stop reading under "stop"."""

    def skipped(number: int, exc: Exception) -> None:
        line = state.lines[number] if number < len(state.lines) else "?"
        state.errors.append(f"{state.name}:{line}: {exc}")
        state.stop = on_error == "stop"

    return skipped


def _encode_input(
    encoder: JSONEncoder, args: argparse.Namespace, state: ReadState
) -> np.ndarray:
    fmt = guess_format(args.input) if args.format == "auto" else args.format

    with _open(args.input) as source, _progress(args.input, args.no_progress) as bar:
        records = read_records(source, state, fmt, args.on_error, bar)
        chunks = list(
            encoder.encode_iter(
                records, on_error="skip", on_skip=_skipper(state, args.on_error)
            )
        )
    _print_errors(state)
    if not chunks:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    return np.concatenate(chunks)


def _print_errors(state: ReadState) -> None:
    for message in state.errors:
        print(f"json2vec: {message}", file=sys.stderr)


def _cmd_encode(args: argparse.Namespace) -> int:
    encoder = _make_encoder(args)
    state = ReadState(name=args.input)
    vectors = _encode_input(encoder, args, state)
    write_vectors(args.output, vectors)
    logger.info("wrote %d vectors of dim %d to %s", *vectors.shape, args.output)
    return 1 if state.errors else 0


def _cmd_fit(args: argparse.Namespace) -> int:
    encoder = _make_encoder(args)
    state = ReadState(name=args.input)
    fmt = guess_format(args.input) if args.format == "auto" else args.format
    with _open(args.input) as source, _progress(args.input, args.no_progress) as bar:
        records = read_records(source, state, fmt, args.on_error, bar)
        encoder.fit(records, on_error="skip", on_skip=_skipper(state, args.on_error))
    _print_errors(state)
    encoder.save(args.output)
    logger.info("fitted on %d records; saved %s", len(state.lines), args.output)
    return 1 if state.errors else 0


def _cmd_query(args: argparse.Namespace) -> int:
    _check_count(args.count)
    encoder = JSONEncoder.load(args.encoder)
    vectors = read_vectors(args.vectors)
    rows = _rows(args.rows, len(vectors))
    candidates = None if args.candidates is None else _json_arg(
        args.candidates, "--candidates")
    if candidates is not None and not isinstance(candidates, list):
        raise ValueError("--candidates must be a JSON array")
    answers = encoder.query(vectors[list(rows)], args.path, candidates, k=args.count)
    for row, found in zip(rows, answers):
        print(
            json.dumps(
                {
                    "row": row,
                    "path": args.path,
                    "values": [[value, round(score, 4)] for value, score in found],
                }
            )
        )
    return 0


def _json_arg(text: str, flag: str) -> object:
    """Parse a JSON command-line value; any failure is a ValueError naming ``flag``."""
    try:
        return loads(text)
    except ValueError as exc:
        raise ValueError(f"{flag} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ValueError(
            f"{flag} is nested too deep for the JSON parser "
            f"(Python's json stops near {sys.getrecursionlimit()} levels)"
        ) from None


def _check_count(count: int) -> int:
    if count < 1:
        raise ValueError(f"--count must be >= 1, got {count}")
    return count


def _rows(text: str | None, n: int) -> list[int]:
    if text is None:
        return list(range(n))
    try:
        rows = [int(r) for r in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--rows must be comma-separated integers, got {text!r}"
        ) from None
    bad = [r for r in rows if not 0 <= r < n]
    if bad:
        raise ValueError(f"--rows {bad} out of range: the file has {n} vectors")
    return rows


def _cmd_similar(args: argparse.Namespace) -> int:
    from leanvec import exact_search

    _check_count(args.count)
    encoder = JSONEncoder.load(args.encoder)
    query = encoder.encode([_json_arg(args.query, "--query")])
    state = ReadState(name=args.input)
    database = _encode_input(encoder, args, state)
    if len(database) == 0:
        raise ValueError(f"{args.input} holds no records to search")
    found = exact_search(database, query, min(args.count, len(database)), "cosine")
    for rank, (row, distance) in enumerate(zip(found.ids[0], found.distances[0]), 1):
        print(
            json.dumps(
                {
                    "rank": rank,
                    "record": int(row),
                    "line": state.lines[row],
                    "similarity": round(1.0 - float(distance), 4),
                }
            )
        )
    return 1 if state.errors else 0


_COMMANDS = {
    "encode": _cmd_encode,
    "fit": _cmd_fit,
    "query": _cmd_query,
    "similar": _cmd_similar,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``json2vec``; returns the exit status (0 ok, 1 bad input lines, 2 error)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="json2vec: %(message)s",
    )
    try:
        return _COMMANDS[args.command](args)
    except (ValueError, TypeError, OSError, RecordError) as exc:
        print(f"json2vec: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
