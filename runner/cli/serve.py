"""``python -m runner serve``: the live, read-only web view of the sweeps (``runner.web``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from runner.cli.consoles import stderr_console
from runner.cli.housekeeping import output_folders
from runner.errors import RunnerError


def cmd_serve(argv: list[str]) -> int:
    """A web view of every sweep under the output folders: live states, runs, curves, searches."""
    parser = argparse.ArgumentParser(prog="python -m runner serve", description=cmd_serve.__doc__)
    parser.add_argument("outputs", type=Path, nargs="*",
                        help="output folders (default: ./outputs)")
    parser.add_argument("--port", type=int, default=8765, help="default 8765; 0: any free port")
    parser.add_argument("--host", default="127.0.0.1",
                        help="default 127.0.0.1 (this machine only); any other address asks "
                             "for the token printed at the start")
    args = parser.parse_args(argv)
    roots = output_folders(args.outputs)
    try:
        import plotly  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise RunnerError(f"the web view needs {exc.name}: pip install 'hydra-runner[web]' "
                          "(or -e '.[web]' in a checkout)") from None
    from runner.web.server import serve

    console = stderr_console()
    serve([r.resolve() for r in roots], args.host, args.port,
          announce=lambda line: console.print(line, markup=False, highlight=False))
    return 0
