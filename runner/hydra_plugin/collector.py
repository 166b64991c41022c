"""Python's garbage collector around Hydra's batches of jobs.

Composing a batch makes every job's config (about 960 objects a job: half a million for 500
jobs), which lives until the sweeper drops the batch's JobReturns: for a plain multirun, the
process's exit. Each full collection walks all of it again: six of them while a sweeper composes
500 jobs (0.7 s of CPU here) and more at the interpreter's exit (1.0-1.9 s). So what a batch
makes is frozen out of the collector's sight, from its composing to the next batch, which gives
it back with one full collection (what the last batch left and no longer needs is freed then:
no batch's garbage is kept for good). An app that froze objects itself is left as it was.
"""

from __future__ import annotations

import gc

COMPOSED_EVERY = 64  # jobs composed between two freezes while a sweeper composes a batch


class _State:
    kept = False  # what the last batch made is frozen, to be given back by the next
    composing = False  # a batch being composed is frozen as it grows
    composed = 0  # jobs composed so far


_state = _State()


def composed() -> None:
    """A job of a batch was composed (the sweeper checks a batch before it launches it)."""
    if _state.kept:  # the first job of a new batch: the last one is given back first
        _give_back()
    _state.composed += 1
    if _state.composed % COMPOSED_EVERY == 0 and _ours():
        gc.freeze()
        _state.composing = True


def launch_starts() -> bool:
    """Before a batch is launched; whether the collector is ours to steer (pass it to
    ``launch_ends``)."""
    if _state.kept:  # (a sweeper that launches without composing first)
        _give_back()
    ours = _ours()
    if ours:
        gc.freeze()
    _state.composing = False
    return ours


def launch_ends(ours: bool) -> None:
    if ours:
        gc.freeze()
        _state.kept = True


def _ours() -> bool:
    return _state.composing or gc.get_freeze_count() == 0


def _give_back() -> None:
    gc.unfreeze()
    _state.kept = _state.composing = False
    gc.collect()
