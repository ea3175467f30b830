"""leanvec-bench: run, plot and tabulate nearest-neighbour benchmarks.

Subcommands: ``run`` (measure), ``plot`` (recall/QPS PNG per dataset), ``table``
(markdown table of QPS at recall levels), ``datasets`` (the catalog and what is
cached), ``algorithms`` (every adapter and whether it can run here). Bad input
(unknown names, malformed files, an unwritable results folder) prints one line
and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from . import definitions as defs
from .adapters import registry, unavailable_reason
from .results import AXES, datasets_in, iter_results, run_table, summary_table

logger = logging.getLogger(__name__)

PROG = "leanvec-bench"


class UsageError(ValueError):
    """Bad input from the command line: reported in one line, exit status 2."""


# ---------------------------------------------------------------- arguments
def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a default only where it says something: not for flags, empty
    values, or help that already names its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("default" in text or action.default in (None, [])
                or isinstance(action.default, bool)):
            return text
        return super()._get_help_string(action)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder of result files")
    parser.add_argument("-k", "--count", type=_positive, default=10, dest="k",
                        help="neighbours per query")


def _run_parser(sub: argparse._SubParsersAction) -> None:
    from leanvec.datasets import DEFAULT_DATASET

    p = sub.add_parser("run", help="build indexes and measure recall, QPS, size",
                       formatter_class=_DefaultsFormatter)
    p.add_argument("--dataset", default=DEFAULT_DATASET,
                   help="catalog name or path to an ann-benchmarks HDF5 file")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--definitions", type=Path, default=None,
                       help="YAML definitions file (default: the shipped quick set)")
    group.add_argument("--full", action="store_true",
                       help="use the shipped full sweeps (definitions-full.yaml)")
    p.add_argument("--algorithm", action="append", default=[], metavar="NAME",
                   help="run only this algorithm (repeatable)")
    p.add_argument("--runs", type=_positive, default=3,
                   help="timed passes per point (the best is kept), after a warm-up")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--batch", dest="batch", action="store_true",
                      help="all queries in one call (the default)")
    mode.add_argument("--single", dest="batch", action="store_false",
                      help="one query per call")
    p.set_defaults(batch=True)
    p.add_argument("--threads", type=_positive, default=1, help="query threads")
    p.add_argument("--build-threads", type=_positive, default=None,
                   help="build threads (default: every core)")
    p.add_argument("--force", action="store_true",
                   help="re-measure points whose result files exist")
    _common(p)


def _report_parser(sub: argparse._SubParsersAction, name: str, help_text: str,
                   ) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text,
                       formatter_class=_DefaultsFormatter)
    p.add_argument("--dataset", default=None,
                   help="dataset folder in the results (default: every one)")
    p.add_argument("--recall", choices=("recall", "annb-recall"), default="recall",
                   help="id-overlap recall or the ann-benchmarks distance threshold")
    _common(p)
    return p


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``leanvec-bench``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    p = _report_parser(sub, "plot", "recall against QPS, one PNG per dataset")
    p.add_argument("--x-axis", choices=sorted(AXES), default="recall")
    p.add_argument("--y-axis", choices=sorted(AXES), default="qps")
    p.add_argument("--output", type=Path, default=None,
                   help="PNG path (one dataset) or folder (default: --results)")
    p = _report_parser(sub, "table", "markdown table: QPS at recall 0.9/0.95/0.99")
    p.add_argument("--points", action="store_true", help="one row per measured point")
    sub.add_parser("datasets", help="list the dataset catalog and what is cached")
    sub.add_parser("algorithms", help="list the algorithms and whether they can run")
    return parser


# ---------------------------------------------------------------- run
def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"results folder {folder} is not writable: "
                         f"{exc.strerror or exc}") from None


def _load_dataset(name: str, k: int):
    from leanvec import datasets

    try:
        data = datasets.load(name)
    except (FileNotFoundError, ConnectionError) as exc:
        raise UsageError(str(exc)) from None
    if data.gt_ids.shape[1] < k:
        raise UsageError(f"-k {k} exceeds the {data.gt_ids.shape[1]} true neighbours "
                         f"stored in {data.name}")
    return data


def _bar(total: int):
    """A tqdm bar on stderr (a no-op object when tqdm is missing)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="run", desc="runs", file=sys.stderr, leave=False)


def _say(bar, line: str) -> None:
    if bar is not None:
        bar.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import Runner, Settings

    path = defs.shipped(defs.FULL_FILE) if args.full else args.definitions
    chosen = defs.select(defs.load(path), args.algorithm)
    data = _load_dataset(args.dataset, args.k)
    _check_writable(args.results)
    settings = Settings(k=args.k, runs=args.runs, batch=args.batch,
                        threads=args.threads, build_threads=args.build_threads,
                        force=args.force, results=args.results)
    bar = _bar(sum(len(d.query_args) for d in chosen))
    runner = Runner(data, settings, on_skip=lambda line: _say(bar, line),
                    on_point=(lambda: bar.update()) if bar is not None else None)
    try:
        results = runner.run(chosen)
    finally:
        if bar is not None:
            bar.close()
    mode = "batch" if args.batch else "one query per call"
    print(f"{data.name}: {len(data.database):,} vectors, "
          f"{len(data.queries):,} queries, "
          f"k={args.k}, {mode}, {args.threads} query thread(s), build threads "
          f"{args.build_threads or os.cpu_count()}\n")
    print(run_table(results, args.k))
    return 0


# ---------------------------------------------------------------- reports
def _report_sets(args: argparse.Namespace) -> list[tuple[str, list]]:
    names = [args.dataset] if args.dataset else datasets_in(args.results)
    sets = [(name, list(iter_results(args.results, name, args.k))) for name in names]
    sets = [(name, found) for name, found in sets if found]
    if not sets:
        where = f"{args.results}/{args.dataset or '*'}/{args.k}"
        raise UsageError(f"no result files under {where}; run `{PROG} run` first")
    return sets


def cmd_plot(args: argparse.Namespace) -> int:
    from .plot import plot

    if importlib.util.find_spec("matplotlib") is None:
        raise UsageError("plot needs matplotlib: pip install leanvec[bench]")
    sets = _report_sets(args)
    x_axis = args.recall if args.x_axis == "recall" else args.x_axis
    for name, found in sets:
        if args.output is not None and args.output.suffix == ".png" and len(sets) == 1:
            output = args.output
        else:
            folder = args.output or args.results
            output = folder / f"{name}-k{args.k}-{x_axis}-{args.y_axis}.png"
        _check_writable(output.parent)
        plot(found, output, f"{name} (k={args.k})", x_axis, args.y_axis, args.k)
        print(output)
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    for name, found in _report_sets(args):
        print(f"### {name} (k={args.k})\n")
        print(run_table(found, args.k) if args.points
              else summary_table(found, args.recall))
        print()
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    from leanvec import datasets

    print("| name | metric | dim | database | queries | local file |")
    print("| --- | --- | ---: | ---: | ---: | --- |")
    for name, entry in sorted(datasets.catalog().items()):
        path = datasets.locate(name)
        local = str(path) if path is not None and path.is_file() else "-"
        print(f"| {name} | {entry.get('metric', '?')} | {entry.get('dim', '?')} | "
              f"{entry.get('n_database', '?')} | {entry.get('n_queries', '?')} "
              f"| {local} |")
    print(f"\ncache folder: {datasets.cache_dir()} "
          f"(set {datasets.CACHE_ENV} to change)")
    return 0


def cmd_algorithms(args: argparse.Namespace) -> int:
    for name, cls in sorted(registry().items()):
        reason = unavailable_reason(cls)
        print(f"{name:20s} {'available' if reason is None else reason}")
    return 0


COMMANDS = {"run": cmd_run, "plot": cmd_plot, "table": cmd_table,
            "datasets": cmd_datasets, "algorithms": cmd_algorithms}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``leanvec-bench``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except (UsageError, defs.DefinitionError, ValueError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
