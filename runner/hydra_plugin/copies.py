"""Hydra's bookkeeping around one job at a third of its copying cost.

Hydra's ``run_job`` deep-copies the job's config four times before the task starts (the task's
config, the Hydra node for ``JobReturn``, and twice the Hydra node that ``HydraConfig`` keeps), and
``copy.deepcopy`` walks OmegaConf's node objects one Python call at a time: 60% of a trivial job's
CPU. A composed config holds only plain values (Hydra composes no ``allow_objects`` node), so
each child node of the copied container can be copied by a pickle round trip instead, with the
same parent links ``DictConfig.__deepcopy__`` sets. Used only inside a job process, only until the
task itself starts (the task's own ``deepcopy`` calls are OmegaConf's), and a node that does not
pickle is copied the usual way.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from omegaconf import DictConfig

_deepcopy = DictConfig.__deepcopy__


def _node_copy(node: Any, memo: dict[int, Any]) -> Any:
    try:
        return pickle.loads(pickle.dumps(node, pickle.HIGHEST_PROTOCOL))
    except Exception:  # (an object value, a class defined in a function)
        return copy.deepcopy(node, memo=memo)


def _fast_deepcopy(self: DictConfig, memo: dict[int, Any]) -> DictConfig:
    """``DictConfig.__deepcopy__``, each child copied by pickle."""
    res = DictConfig(None)
    res.__dict__["_metadata"] = copy.deepcopy(self.__dict__["_metadata"], memo=memo)
    res.__dict__["_flags_cache"] = copy.deepcopy(self.__dict__["_flags_cache"], memo=memo)
    src = self.__dict__["_content"]
    if isinstance(src, dict):
        content = {}
        for key, value in src.items():
            parent = value.__dict__["_parent"]
            try:  # detached while copied, as OmegaConf does: the copy's parent is the copy
                value.__dict__["_parent"] = None
                child = _node_copy(value, memo)
                child.__dict__["_parent"] = res
                content[key] = child
            finally:
                value.__dict__["_parent"] = parent
        src = content
    res.__dict__["_content"] = src
    res.__dict__["_parent"] = self.__dict__["_parent"]
    return res


@contextlib.contextmanager
def fast_copies(task: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
    """Within: configs copied fast; yields the task to hand ``run_job``, which puts OmegaConf's
    own copy back before the task runs."""

    @functools.wraps(task)
    def plain_copies_in_the_task(*args: Any, **kwargs: Any) -> Any:
        DictConfig.__deepcopy__ = _deepcopy  # type: ignore[method-assign]
        return task(*args, **kwargs)

    DictConfig.__deepcopy__ = _fast_deepcopy  # type: ignore[method-assign]
    try:
        yield plain_copies_in_the_task
    finally:
        DictConfig.__deepcopy__ = _deepcopy  # type: ignore[method-assign]
