"""Sweeps handed to other tools: ``wandb-sync`` (offline WandB runs) and ``export-study``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape

from runner.config import secrets


def cmd_wandb_sync(argv: list[str]) -> int:
    """Upload a sweep's offline WandB runs from a machine with internet (WandB's own sync)."""
    from runner.integrations.wandb_sync import sync_sweep

    parser = argparse.ArgumentParser(prog="python -m runner wandb-sync",
                                     description=cmd_wandb_sync.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--project", help="upload into this WandB project instead")
    parser.add_argument("--entity", help="... of this entity")
    parser.add_argument("--dry-run", action="store_true", help="say what would be synced")
    args = parser.parse_args(argv)
    result = sync_sweep(args.sweep_dir, args.project, args.entity, args.dry_run,
                        progress=sys.stderr.isatty())
    out = secrets.table_console()
    if args.dry_run:
        out.print(f"would sync {len(result.synced)} offline WandB run(s) of "
                  f"{len({r.run_id for r in result.synced})} run(s); "
                  f"{len(result.already)} already synced, {len(result.running)} still RUNNING")
        for item in result.synced:
            out.print(f"  {item.run_id}  {escape(str(item.file.parent))}")
        return 0
    for item, why in result.failed:
        out.print(f"[red]failed[/] {item.run_id} ({escape(str(item.file.parent.name))}): "
                  f"{escape(why)}")
    out.print(result.summary())
    return 1 if result.failed else 0


def cmd_export_study(argv: list[str]) -> int:
    """Write a study as an optuna database (for optuna-dashboard); runner never reads it."""
    from runner.study.export import export_study

    parser = argparse.ArgumentParser(prog="python -m runner export-study",
                                     description=cmd_export_study.__doc__)
    parser.add_argument("sweep_dir", type=Path)
    parser.add_argument("--out", type=Path, help="the database file (default: "
                        "SWEEP_DIR/optuna.db)")
    args = parser.parse_args(argv)
    path, n = export_study(args.sweep_dir, args.out)
    secrets.table_console().print(f"{n} trial(s) written to {escape(str(path))}\n"
                            f"optuna-dashboard sqlite:///{escape(str(path))}")
    return 0
