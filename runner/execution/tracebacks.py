"""Tracebacks read back as text from another process (a Hydra job's, a rank's): the frames
below a given function's, as Hydra shows a job's failure from the app's own frame on."""

from __future__ import annotations

HEADER = "Traceback (most recent call last):"


def frames_below(trace: str, function: str, last: bool = True) -> list[str] | None:
    """The lines of ``trace`` from the frame after ``function``'s (its last frame, or its
    first with ``last=False``) on, the exception's text included; None when it has none."""
    lines = trace.rstrip().splitlines()
    found = [i for i, line in enumerate(lines) if line.strip().startswith("File ")
             and line.rstrip().endswith(f", in {function}")]
    if not found:
        return None
    rest = lines[(found[-1] if last else found[0]) + 1:]
    while rest and not rest[0].strip().startswith("File "):
        rest.pop(0)  # (the function's own code line and its carets)
    return rest
