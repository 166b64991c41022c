"""``python -m runner``: a sub-command (a function of a ``runner.cli`` module, named in
``COMMANDS``) or, for anything else, the overrides of a sweep to expand, freeze and launch
(``runner.cli.run``)."""

from __future__ import annotations

import importlib
import os
import sys

from rich.markup import escape

from runner.cli.consoles import stderr_console
from runner.config import secrets
from runner.errors import RunnerError

DISTRIBUTION = "hydra-runner"  # the name on the package index ("runner" there is another's)
# each sub-command: 'module:function', called with the arguments after its name
COMMANDS: dict[str, str] = {
    "status": "runner.cli.inspect:cmd_status", "show": "runner.cli.inspect:cmd_show",
    "rerun": "runner.cli.relaunch:cmd_rerun", "resume": "runner.cli.relaunch:cmd_resume",
    "cancel": "runner.cli.inspect:cmd_cancel", "report": "runner.cli.results:cmd_report",
    "compare": "runner.cli.results:cmd_compare",
    "retrain-best": "runner.cli.relaunch:cmd_retrain_best",
    "wandb-sync": "runner.cli.exports:cmd_wandb_sync",
    "export-study": "runner.cli.exports:cmd_export_study",
    "ls": "runner.cli.housekeeping:cmd_ls", "tag": "runner.cli.housekeeping:cmd_tag",
    "note": "runner.cli.housekeeping:cmd_note", "clean": "runner.cli.housekeeping:cmd_clean",
    "extend": "runner.cli.relaunch:cmd_extend", "serve": "runner.cli.serve:cmd_serve"}
SUBCOMMANDS = tuple(COMMANDS)


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a program of its own (not called from Python): redacted tracebacks
        secrets.install_hooks()
        if "" not in sys.path and os.getcwd() not in sys.path:  # the `runner` script, as
            sys.path.insert(0, os.getcwd())  # `python -m runner` does: the user's tasks import
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] in (["--version"], ["-V"]):
        print(f"runner {version()} (the hydra-runner distribution), Python "
              f"{sys.version.split()[0]}")
        return 0
    try:
        if argv and argv[0] in COMMANDS:
            module, _, function = COMMANDS[argv[0]].partition(":")
            return int(getattr(importlib.import_module(module), function)(argv[1:]))
        _refuse_unknown_command(argv)
        from runner.cli.run import cmd_run

        return cmd_run(argv)
    except RunnerError as exc:
        stderr_console().print(f"[bold red]error:[/] {escape(str(exc))}")
        _debug_traceback()
        return exc.exit_code
    except BrokenPipeError:  # e.g. `status --json | head` (an OSError: caught before those)
        sys.stderr.close()
        return 0
    except OSError as exc:  # an environmental fault (disk full, a file gone or locked)
        from runner.errors import describe_os_error

        text = describe_os_error(exc, doing="using")
        stderr_console().print(f"[bold red]error:[/] {escape(text)}")
        _debug_traceback()
        return 1


def version() -> str:
    """This runner's version (its distribution's, or the source tree's when not installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _debug_traceback() -> None:
    """``RUNNER_DEBUG=1``: the traceback behind an error message, for bug reports."""
    import traceback

    if os.environ.get("RUNNER_DEBUG") == "1":
        sys.stderr.write(secrets.redact(traceback.format_exc()))


def _refuse_unknown_command(argv: list[str]) -> None:
    """``stauts DIR``: a word that is neither an override nor an option is a mistyped command."""
    import difflib

    word = argv[0] if argv else ""
    if not word or word.startswith("-") or "=" in word or word.startswith("~"):
        return
    close = difflib.get_close_matches(word, SUBCOMMANDS, n=1, cutoff=0.5)
    raise RunnerError(f"unknown command '{word}'"
                      + (f"; did you mean '{close[0]}'?" if close else "")
                      + f" (commands: {', '.join(SUBCOMMANDS)}; overrides look like key=value)")
