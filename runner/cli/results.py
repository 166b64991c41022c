"""Results of finished sweeps: ``report`` and ``compare``."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.cli.consoles import print_table, stderr_console


def _results_parser(prog: str, dirs: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m runner {prog}")
    parser.add_argument("sweep_dirs" if dirs == "+" else "sweep_dir", type=Path,
                        nargs=dirs if dirs == "+" else None)
    if dirs == "+":
        parser.add_argument("--metric", required=True, help="a logged metric, e.g. val/acc")
    else:
        parser.add_argument("--metric", default=None,
                            help="a logged metric, e.g. val/acc (default: the sweep's own, "
                                 "sweep.metric or runner.metric; a study of several objectives: "
                                 "its first)")
    parser.add_argument("--mode", choices=["max", "min"], default=None,
                        help="higher (max) or lower (min) is better; default: from the metric's "
                             "name when it says (loss -> min, acc -> max)")
    parser.add_argument("--reduce", default="final",
                        help="final (default), best, or last:K (mean of the last K values)")
    return parser


def _mode(args: argparse.Namespace) -> str:
    """The metric's mode, once the sweep directories are known to be sweeps (a wrong path is
    said first, not a question about the metric)."""
    from runner.results.modes import mode_for
    from runner.storage.store import SweepStore

    for folder in getattr(args, "sweep_dirs", None) or [args.sweep_dir]:
        manifest = SweepStore(folder).manifest  # (raises: no such sweep, naming the folder)
    if args.metric is None:
        args.metric, mode = own_metric(manifest)
        if args.metric is None:
            from runner.errors import RunnerError
            from runner.results.queries import metric_names

            names = metric_names(SweepStore(args.sweep_dir))
            raise RunnerError(f"--metric: {args.sweep_dir} names no metric of its own (sweep."
                              "metric or runner.metric); give one"
                              + (f" of: {', '.join(names[:8])}" if names else ", e.g. val/acc"))
        return mode_for(args.metric, args.mode or mode)
    return mode_for(args.metric, args.mode)


def own_metric(manifest: dict) -> tuple[str | None, str | None]:
    """The metric a sweep names itself (a study's objective, its first of several; else
    runner.metric) and its mode if it says one."""
    execution = manifest.get("execution") or {}
    sweep = execution.get("sweep") or {}
    runner_cfg = execution.get("runner") or {}
    if manifest.get("kind") == "optuna" and sweep.get("metric"):
        metric, mode = sweep.get("metric"), sweep.get("mode")
        if isinstance(metric, list):
            return str(metric[0]), (mode[0] if isinstance(mode, list) else None)
        return str(metric), mode or runner_cfg.get("mode")
    metric = runner_cfg.get("metric")
    return (str(metric), runner_cfg.get("mode")) if metric else (None, None)


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
    if report.pareto is not None:
        from runner.results.report import front_table

        header, rows = front_table(report.pareto)
        print_table(rows, header, f"Pareto front: {len(rows)} of {report.pareto.settings} "
                                  "settings")
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
