"""Results of finished sweeps: ``report`` and ``compare``."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.cli.consoles import print_table, stderr_console


def _results_parser(prog: str, dirs: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m runner {prog}")
    parser.add_argument("sweep_dirs" if dirs == "+" else "sweep_dir", type=Path,
                        nargs=dirs if dirs == "+" else None)
    parser.add_argument("--metric", required=True, help="a logged metric, e.g. val/acc")
    parser.add_argument("--mode", choices=["max", "min"], default=None,
                        help="higher (max) or lower (min) is better; default: from the metric's "
                             "name when it says (loss -> min, acc -> max)")
    parser.add_argument("--reduce", default="final",
                        help="final (default), best, or last:K (mean of the last K values)")
    return parser


def _mode(args: argparse.Namespace) -> str:
    """The metric's mode, once the sweep directories are known to be sweeps (a wrong path is
    said first, not a question about the metric)."""
    from runner.results.aggregate import mode_for
    from runner.storage.store import SweepStore

    for folder in getattr(args, "sweep_dirs", None) or [args.sweep_dir]:
        SweepStore(folder).manifest  # noqa: B018  (raises: no such sweep, naming the folder)
    return mode_for(args.metric, args.mode)


def cmd_report(argv: list[str]) -> int:
    from runner.results.report import HEADER, make_report, stats_table
    from runner.storage.store import SweepStore

    parser = _results_parser("report", "1")
    parser.add_argument("--out", type=Path, help="output folder (default: SWEEP_DIR/report/METRIC)")
    parser.add_argument("--svg", action="store_true", help="SVG figures as well as PNG")
    parser.add_argument("--pdf", action="store_true", help="PDF figures as well as PNG")
    args = parser.parse_args(argv)
    args.mode = _mode(args)
    report = make_report(SweepStore(args.sweep_dir), args.metric, args.mode, args.reduce,
                         args.out, args.svg, args.pdf)
    print_table(stats_table(report.ranked), HEADER,
                 f"{report.metric} ({args.reduce}, {args.mode}), best first")
    stderr_console().print(f"best: {report.best.label}\nreport: {report.files['report.md']}")
    return 0


def cmd_compare(argv: list[str]) -> int:
    from runner.results.report import HEADER, compare, stats_table
    from runner.storage.store import SweepStore

    parser = _results_parser("compare", "+")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: ./reports/compare-<names>)")
    parser.add_argument("--svg", action="store_true", help="SVG figures as well as PNG")
    parser.add_argument("--pdf", action="store_true", help="PDF figures as well as PNG")
    args = parser.parse_args(argv)
    args.mode = _mode(args)
    stores = [SweepStore(d) for d in args.sweep_dirs]
    out = args.out or Path("reports") / ("compare-" + "-".join(s.root.name for s in stores))[:120]
    ranked, files = compare(stores, args.metric, args.mode, args.reduce, out, args.svg,
                            args.pdf)
    rows = stats_table([g for _, g in ranked])
    print_table([[name, *row] for (name, _), row in zip(ranked, rows, strict=True)],
                 ["sweep", *HEADER], f"{args.metric} ({args.reduce}, {args.mode}), best first")
    stderr_console().print(f"compare: {files['compare.md']}")
    return 0
