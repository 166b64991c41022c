"""Command line: ``python -m runner [OVERRIDES...]`` and its sub-commands.

    python -m runner [--config-dir DIR] [OVERRIDE ...]      expand, freeze, launch (or resume)
    python -m runner status SWEEP_DIR [--json] [--all]       states of a sweep's runs
    python -m runner show RUN_DIR [--json]                   everything about one run
    python -m runner rerun RUN_DIR [--from-checkpoint] [OVERRIDE ...]   run it again, as a new
                                                             sweep linked to its parent
    python -m runner resume SWEEP_DIR [OVERRIDE ...]         resume a sweep by its directory
    python -m runner cancel SWEEP_DIR                        stop the runners working on it
    python -m runner report SWEEP_DIR --metric M [--mode max|min]   table, plots, CSV, Markdown
    python -m runner compare DIR DIR ... --metric M          several sweeps side by side
    python -m runner retrain-best SWEEP_DIR --metric M --seeds K     best setting, K new seeds
    python -m runner wandb-sync SWEEP_DIR [--dry-run]        upload its offline WandB runs
    python -m runner export-study SWEEP_DIR [--out FILE]     a study as an optuna database
    python -m runner ls [OUTPUTS ...] [--tag T]              every sweep: states, size, tags
    python -m runner tag SWEEP_OR_RUN_DIR TAG ... [-r TAG]   tag a sweep or a run
    python -m runner note SWEEP_OR_RUN_DIR "TEXT"            a note on a sweep or a run
    python -m runner clean [DIR ...] --older-than 30d [--yes]   delete or archive old sweeps
    python -m runner extend SWEEP_DIR 'seed=range(5)'        more runs in the same sweep
    python -m runner serve [OUTPUTS ...] [--port 8765]       a live, read-only web view

Overrides use Hydra's grammar (``task.lr=0.1,0.01``, ``+sweep=grid``, ``'seed=range(5)'``).
Re-running the same command resumes the same sweep: its directory name is derived from the
command's overrides (not from the time), and only runs that are not COMPLETED are launched.
"""
