"""Sweep expansion: command-line overrides and ``conf/sweep/*.yaml`` -> an ordered list of runs.

Axes use Hydra's override grammar (``a,b``, ``range()``, ``choice()``, ``interval()``,
``tag(log, interval())``, ``int(interval())``). Configs are composed with Hydra once per
combination of swept config *groups* (with a representative value for every swept key, so that
Hydra itself reports a typo such as ``task.lrr``), every distinct swept value is type-checked once,
and each run's config is then built by setting its values into a copy of the composed config.
That makes a 10,000-run grid cost a handful of ``compose`` calls instead of 10,000.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hydra.core.override_parser.types import (
    ChoiceSweep,
    IntervalSweep,
    Override,
    Quote,
    QuotedString,
    RangeSweep,
)
from omegaconf import DictConfig, OmegaConf

from runner.config.compose import Composer, parse_overrides, to_container
from runner.config.schema import SWEEP_KINDS, SweepConf, validate
from runner.config.secrets import add_env_names, find_secret
from runner.errors import ConfigError, SweepError
from runner.planning.filters import compile_filter
from runner.planning.run_id import canonical_values, run_dirname, run_id
from runner.storage.paths import check_component

# Sweep kinds planned outside this module (one door each: 'module:function', called with the
# composer, the composed base config, the arguments, the plain overrides, the command line's
# axes, the config name and the config sources; it returns a Plan)
PLANNERS: dict[str, str] = {"optuna": "runner.study.plan:plan_study"}

# Sections that configure runner itself: sweep-wide, never part of a run's frozen config.
# (``axes``: a task's default axes, pulled in by its defaults list from conf/axes/<task>.yaml.)
EXEC_SECTIONS = ("runner", "launcher", "notifier", "tracker", "sweep", "hydra", "axes")
_NOT_FINGERPRINTED = ("runner", "launcher", "notifier", "tracker", "hydra")


@dataclass
class Axis:
    """One swept key and the values it takes."""

    key: str
    prefix: str  # "", "+" or "++", as written on the command line
    choices: list[Any] | None  # discrete values, or None for an interval
    interval: IntervalSweep | None = None
    crossed: bool = False  # random search: crossed with the samples (the seeds axis)
    texts: list[str] | None = None  # each choice as Hydra writes it (``[amazon]``), if known

    def grid_values(self) -> list[Any]:
        if self.choices is None:
            raise SweepError(f"axis '{self.key}' is an interval(): intervals need +sweep=random; "
                             "use a,b,c, range() or choice() for a grid")
        return self.choices

    def sample(self, rng: random.Random) -> Any:
        if self.choices is not None:
            return rng.choice(self.choices)
        assert self.interval is not None
        lo, hi = self.interval.start, self.interval.end
        assert lo is not None and hi is not None
        as_int = isinstance(lo, int) and isinstance(hi, int)
        if "log" in self.interval.tags:
            if lo <= 0:
                raise SweepError(f"axis '{self.key}': a log interval needs a start > 0, got {lo}")
            value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
            return int(round(value)) if as_int else value
        return rng.randint(int(lo), int(hi)) if as_int else rng.uniform(lo, hi)


@dataclass(frozen=True)
class Limits:
    """What one expansion may cost. The shell user's command line has no run limit; the bot's
    ``/launch`` sets one, and refuses importable filter predicates."""

    max_runs: int | None = None
    predicates: bool = True
    where: str = "the run limit"  # the setting that sets max_runs, for messages

    def check(self, count: int | float, what: str) -> None:
        if self.max_runs is not None and count > self.max_runs:
            raise SweepError(f"{what} would give {count:.0f} runs; at most {self.max_runs} "
                             f"are allowed here ({self.where})")


NO_LIMITS = Limits()


def _sweep_length(value: Any) -> int | None:
    """How many values a range()/choice() sweep has, computed without listing them."""
    if isinstance(value, RangeSweep):
        start, stop, step = value.start, value.stop, value.step
        if start is None or stop is None or not step:
            return None
        return max(0, math.ceil((stop - start) / step))
    if isinstance(value, ChoiceSweep):
        return len(value.list)
    return None


@dataclass
class RunSpec:
    id: str
    dirname: str
    values: dict[str, Any]
    config: dict[str, Any]
    index: int | None = None  # a number the run keeps for good (e.g. a Hydra job's num)
    files: dict[str, str] = field(default_factory=dict)  # more files frozen with the run


@dataclass
class Plan:
    """Everything a sweep directory is frozen from."""

    name: str
    kind: str
    runs: list[RunSpec]
    axes: list[str]
    varying: list[str]
    execution: dict[str, Any]
    overrides: list[str]
    fingerprint: str
    notes: list[str] = field(default_factory=list)
    parent: dict[str, Any] | None = None  # e.g. the sweep a retrain-best sweep comes from
    sources: dict[str, str] = field(default_factory=dict)  # group -> the file it came from
    # what a run process calls instead of its config's task.fn ('module:function'), for sweeps
    # whose runs are not runner tasks (a Hydra app's jobs)
    entry: str | None = None
    origin: dict[str, Any] | None = None  # how the sweep was started, when not by runner's CLI
    files: dict[str, str] = field(default_factory=dict)  # more files in the sweep directory
    # 'module:Class' the sweep loop asks for more runs while it runs (a study's next trial)
    source: str | None = None
    run_hooks: list[str] = field(default_factory=list)  # 'module:fn' called in each run
    # A sweep whose runs come later (a study) says what they can be: the config every later run
    # is built from, the keys a later run may set, and how many runs there can be at most. The
    # run limit and chat's policy judge these, whatever the kind: a plan with neither runs nor a
    # template cannot be judged and is refused where a judge is asked (the bot).
    template: dict[str, Any] | None = None
    searched: list[str] = field(default_factory=list)
    max_runs: int | None = None  # default: the runs listed
    aliases: list[str] = field(default_factory=list)  # older names of the same sweep
    # 'module:function' called with (store, plan, console) when the sweep exists already: a
    # study takes a new n_trials there
    on_resume: str | None = None

    def run_budget(self) -> int:
        """How many runs this sweep can make: the runs listed, or what a later source may add."""
        return len(self.runs) if self.max_runs is None else max(self.max_runs, len(self.runs))


def plain(value: Any) -> Any:
    """Hydra's parsed values -> plain Python (a quoted string is its text)."""
    if isinstance(value, QuotedString):
        return value.text
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _quoted(value: Any) -> Any:
    if isinstance(value, str):
        return QuotedString(text=value, quote=Quote.single)
    if isinstance(value, list):
        return [_quoted(v) for v in value]
    if isinstance(value, dict):
        return {k: _quoted(v) for k, v in value.items()}
    return value


def encode(value: Any) -> str:
    """A Python value as Hydra override text that parses back to the same value."""
    return str(Override._get_value_element_as_str(_quoted(value)))


def override_key(o: Override) -> str:
    """The key an override sets, its package kept (``db@source``, and ``db@`` for the root
    package: neither the same as ``db``)."""
    return f"{o.key_or_group}@{o.package}" if o.package is not None else o.key_or_group


def _axis_from_override(o: Override, from_cli: bool, limits: Limits = NO_LIMITS,
                        reserved: Sequence[str] = EXEC_SECTIONS) -> Axis:
    key = override_key(o)
    prefix = "++" if o.is_force_add() else "+" if o.is_add() else ""
    if not from_cli:
        prefix = ""
    if key.split(".")[0] in reserved and key.split(".")[0] != "sweep":
        raise SweepError(f"cannot sweep over '{key}': {key.split('.')[0]} settings apply to the "
                         "whole sweep, not to one run")
    value = o.value()
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None or not value.start < value.end:
            raise SweepError(f"axis '{key}': interval({value.start}, {value.end}) is empty or "
                             "reversed; the start must be below the end")
        return Axis(key, prefix, None, value)
    if isinstance(value, ChoiceSweep | RangeSweep):
        length = _sweep_length(value)
        if length is not None:
            limits.check(length, f"the axis '{key}'")
        choices = [plain(v) for v in o.sweep_iterator()]
        if not choices:
            raise SweepError(f"axis '{key}' has no values ({o.input_line or key}); a range's "
                             "start must be below its stop for a positive step")
        try:
            texts: list[str] | None = [str(t) for t in o.sweep_string_iterator()]
        except Exception:  # (a glob() without a config loader)
            texts = None
        return Axis(key, prefix, choices, texts=texts if texts and len(texts) == len(choices)
                    else None)
    return Axis(key, prefix, [plain(value)])


def _params_axes(params: dict[str, Any], limits: Limits,
                 reserved: Sequence[str] = EXEC_SECTIONS, where: str = "sweep") -> list[Axis]:
    axes = []
    for key, raw in params.items():
        text = raw if isinstance(raw, str) else encode(raw)
        try:
            (o,) = parse_overrides([f"{key}={text}"])
        except ConfigError as exc:
            raise SweepError(f"{where}.params.{key}: {exc}") from None
        axes.append(_axis_from_override(o, from_cli=False, limits=limits, reserved=reserved))
    return axes


def sweep_values(spec: SweepConf, overrides: Sequence[str], limits: Limits = NO_LIMITS,
                 where: str = "sweep") -> tuple[list[list[str]], list[str]]:
    """Each run's overrides for a sweep of ``spec``'s kind (grid, random, list; seeds, filter,
    subset) crossed with the swept ``overrides``, for a composer other than runner's (the Hydra
    sweeper: an app's own config). Returns (the runs' override lists, notes).

    Only ``hydra`` is reserved here; the filter sees each run's values as its config.
    """
    if spec.kind not in SWEEP_KINDS:
        raise SweepError(f"{where}.kind='{spec.kind}' is not one of {', '.join(SWEEP_KINDS)}")
    reserved = ("hydra",)
    parsed = parse_overrides(overrides)
    cli_axes = [_axis_from_override(o, True, limits, reserved) for o in parsed
                if o.is_sweep_override()]
    fixed_keys = {override_key(o) for o in parsed if not o.is_sweep_override()}
    config_axes = [] if spec.kind == "list" else _params_axes(spec.params, limits, reserved,
                                                              where)
    axes = _merge_axes(config_axes, cli_axes, fixed_keys)
    axes = _seeds_axis(spec, axes, {a.key for a in cli_axes}, limits, _set_values(parsed))
    notes: list[str] = []
    values_list = (_expand_values(spec, axes, notes, limits) if (axes or spec.kind == "list")
                   else [{}])
    limits.check(len(values_list), "the sweep")
    prefixes = {a.key: a.prefix for a in axes}
    if spec.seeds is not None and not prefixes.get(spec.seed_key):
        prefixes[spec.seed_key] = "++"  # set, or added to an app whose config has no seed
    runs = []
    for values in values_list:
        nested: dict[str, Any] = {}
        for key, value in values.items():  # what the filter sees as the run's config
            try:
                set_dotted(nested, key, value)
            except (TypeError, ValueError, IndexError, AttributeError):
                pass  # a group's choice and a key inside it (db=mysql db.user=a): flat only
        runs.append(RunSpec(run_id(values), run_dirname(values), values, nested))
    runs = _select(runs, spec, notes, limits)
    fixed_text = {override_key(o): str(o.input_line) for o in parsed
                  if not o.is_sweep_override()}
    for o in parsed:  # a seed axis over a key the command line adds (+seed=0): added too
        if not o.is_sweep_override() and (o.is_add() or o.is_force_add()):
            if not prefixes.get(override_key(o)):
                prefixes[override_key(o)] = "++" if o.is_force_add() else "+"
    # Hydra's basic sweeper's order: the config's params, then the command line's keys (one
    # that a param also sets keeps the param's place)
    order = list(dict.fromkeys([*(a.key for a in config_axes),
                                *(override_key(o) for o in parsed)]))
    texts = {a.key: {canonical_values({"v": v}): t for v, t in zip(a.choices, a.texts,
                                                                  strict=True)}
             for a in axes if a.texts is not None and a.choices is not None}

    def text(key: str, value: Any) -> str:
        """A value as Hydra wrote it on the command line, else as runner writes it."""
        written = texts.get(key, {}).get(canonical_values({"v": value}))
        return written if written is not None else _bare(value)

    def job(values: dict[str, Any]) -> list[str]:
        keys = [*order, *(k for k in values if k not in fixed_text and k not in order)]
        return [fixed_text[k] if k in fixed_text and k not in values
                else f"{prefixes.get(k, '')}{k}={text(k, values[k])}" for k in keys
                if k in fixed_text or k in values]

    return [job(r.values) for r in runs], notes


def _bare(value: Any) -> str:
    """Override text of ``value``, unquoted where it reads back the same (``db=mysql``)."""
    if isinstance(value, str) and value:
        try:
            (o,) = parse_overrides([f"k={value}"])
            if plain(o.value()) == value and isinstance(o.value(), str):
                return value
        except ConfigError:
            pass
    return encode(value)


def _merge_axes(base: list[Axis], extra: Iterable[Axis], fixed: set[str]) -> list[Axis]:
    """Command-line axes replace config axes of the same key in place; fixed keys drop out."""
    out = [a for a in base if a.key not in fixed]
    for axis in extra:
        idx = next((i for i, a in enumerate(out) if a.key == axis.key), None)
        if idx is None:
            out.append(axis)
        else:
            out[idx] = axis
    return out


def _set_values(parsed: list[Override]) -> set[str]:
    """Keys the command line sets to one value (``seed=5``); ``+seed=0`` only adds a key a
    Hydra app lacks, for a seeds axis to fill."""
    return {override_key(o) for o in parsed
            if not o.is_sweep_override() and not (o.is_add() or o.is_force_add())}


def _seeds_axis(spec: SweepConf, axes: list[Axis], cli_keys: set[str],
                limits: Limits, fixed: set[str] | frozenset[str] = frozenset()) -> list[Axis]:
    if spec.seeds is None:
        return axes
    if spec.seed_key in fixed:
        raise SweepError(f"both sweep.seeds={spec.seeds} (K seeds for every setting"
                         + (", the list sweep's default" if spec.kind == "list" else "")
                         + f") and {spec.seed_key}=... on the command line: give "
                         f"sweep.seeds=null to keep your {spec.seed_key}, or leave it out")
    if isinstance(spec.seeds, bool) or not isinstance(spec.seeds, int | list):
        raise SweepError(f"sweep.seeds={spec.seeds!r} must be a count (3: seeds 0, 1, 2) or a "
                         "list of seeds ([1, 5, 9])")
    if isinstance(spec.seeds, int):
        limits.check(spec.seeds, f"sweep.seeds={spec.seeds}")
    if spec.seed_key in cli_keys:
        raise SweepError(f"both sweep.seeds={spec.seeds} and a '{spec.seed_key}' axis on the "
                         "command line: give one of them")
    seeds = list(range(spec.seeds)) if isinstance(spec.seeds, int) else list(spec.seeds)
    if not seeds:
        raise SweepError(f"sweep.seeds={spec.seeds!r} gives no seed")
    rest = [a for a in axes if a.key != spec.seed_key]
    return [*rest, Axis(spec.seed_key, "", seeds, crossed=True)]


def _expand_values(spec: SweepConf, axes: list[Axis], notes: list[str], limits: Limits,
                   fixed: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """Every run's values; ``fixed``: the keys of the command line's plain overrides
    (``key=value``, ``+key=value``), which a list entry may not set as well."""
    crossed_size = math.prod(len(a.choices) for a in axes
                             if a.choices is not None and (spec.kind != "random" or a.crossed))
    if spec.kind == "grid":
        limits.check(crossed_size, "the grid")
        keys = [a.key for a in axes]
        return [dict(zip(keys, combo, strict=True))
                for combo in itertools.product(*(a.grid_values() for a in axes))]
    if spec.kind == "random":
        limits.check(spec.num_samples * crossed_size, f"sweep.num_samples={spec.num_samples}")
        rng = random.Random(spec.seed)
        sampled = [a for a in axes if not a.crossed]
        crossed = [a for a in axes if a.crossed]
        out, seen = [], set()
        for _ in range(spec.num_samples):
            draw = {a.key: a.sample(rng) for a in sampled}
            canon = canonical_values(draw)
            if canon in seen:
                continue
            seen.add(canon)
            for combo in itertools.product(*(a.grid_values() for a in crossed)):
                out.append({**draw, **dict(zip([a.key for a in crossed], combo, strict=True))})
        if len(seen) < spec.num_samples:
            notes.append(f"{spec.num_samples - len(seen)} duplicate random draw(s) dropped "
                         "(the search space is small)")
        return out
    # list: explicit settings, crossed with every axis (seeds, command-line axes)
    if not spec.runs:
        raise SweepError("sweep.runs is empty: a list sweep needs at least one setting")
    settings = []
    for i, entry in enumerate(spec.runs):
        if not isinstance(entry, dict) or not entry:
            raise SweepError(f"sweep.runs[{i}] must be a non-empty mapping of key: value, "
                             f"got {entry!r}")
        settings.append(dict(entry))
    limits.check(len(settings) * crossed_size, "sweep.runs")
    keys = [a.key for a in axes]
    for i, setting in enumerate(settings):  # an axis would replace the entry's value unseen
        clash = next((k for k in keys if k in setting), None)
        if clash is not None:
            raise SweepError(f"sweep.runs[{i}] sets {clash} and so does "
                             + ("sweep.seeds" if clash == spec.seed_key and spec.seeds
                                is not None else "an axis on the command line")
                             + ": give it in one place")
        clash = next((k for k in fixed if k in setting), None)  # ... or a plain key=value
        if clash is not None:
            raise SweepError(f"{clash}=... on the command line and sweep.runs[{i}] sets "
                             f"{clash} too: give it in one place")
    return [{**s, **dict(zip(keys, combo, strict=True))}
            for s in settings for combo in itertools.product(*(a.grid_values() for a in axes))]


def set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node: Any = cfg
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(parts[-1])] = value
    else:
        node[parts[-1]] = copy.deepcopy(value)


def has_interpolation(obj: Any) -> bool:
    if isinstance(obj, dict):
        return any(has_interpolation(v) for v in obj.values())
    if isinstance(obj, list):
        return any(has_interpolation(v) for v in obj)
    return isinstance(obj, str) and "${" in obj


class _ConfigBuilder:
    """Builds each run's resolved config with one Hydra compose per group combination."""

    def __init__(self, composer: Composer, plain: list[str], prefixes: dict[str, str],
                 config_name: str) -> None:
        self.composer = composer
        self.config_name = config_name
        self.plain = plain
        self.prefixes = prefixes
        self._groups: dict[str, bool] = {}
        self._cache: dict[tuple[Any, ...], tuple[DictConfig, dict[str, Any], bool]] = {}
        self._probes: dict[tuple[Any, ...], DictConfig] = {}
        self._checked: set[tuple[Any, ...]] = set()

    def is_group(self, key: str) -> bool:
        if key not in self._groups:
            self._groups[key] = "." not in key and self.composer.is_group(key)
        return self._groups[key]

    def _override(self, key: str, value: Any) -> str:
        return f"{self.prefixes.get(key, '')}{key}={encode(value)}"

    def prepare(self, runs: list[dict[str, Any]]) -> None:
        """Compose once per group combination, with the first run's values as representatives."""
        for values in runs:
            gkey = self._group_key(values)
            if gkey in self._cache:
                continue
            overrides = [*self.plain, *(self._override(k, v) for k, v in values.items())]
            cfg = self.composer.compose(overrides, self.config_name)
            full = to_container(cfg, resolve=False)
            interp = has_interpolation({k: v for k, v in full.items()
                                         if k not in EXEC_SECTIONS})
            resolved = to_container(cfg) if not interp else full
            self._cache[gkey] = (cfg, resolved, interp)

    def _group_key(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return tuple((k, v) for k, v in values.items() if self.is_group(k))

    def execution(self) -> dict[str, Any]:
        cfg = next(iter(self._cache.values()))[0]
        return {k: to_container(cfg[k]) if isinstance(cfg[k], DictConfig) else cfg[k]
                for k in EXEC_SECTIONS if k in cfg and k != "hydra" and cfg[k] is not None}

    def build(self, values: dict[str, Any]) -> dict[str, Any]:
        gkey = self._group_key(values)
        cfg, base, interp = self._cache[gkey]
        value_items = [(k, v) for k, v in values.items() if not self.is_group(k)]
        for key, value in value_items:
            self._check(gkey, cfg, key, value)
        if not interp:
            out = {k: copy.deepcopy(v) for k, v in base.items() if k not in EXEC_SECTIONS}
            for key, value in value_items:
                set_dotted(out, key, value)
            return out
        node = OmegaConf.create(base)
        for key, value in value_items:
            OmegaConf.update(node, key, value, merge=False, force_add=True)
        return {k: v for k, v in to_container(node).items() if k not in EXEC_SECTIONS}

    def _check(self, gkey: tuple[Any, ...], cfg: DictConfig, key: str, value: Any) -> None:
        """Type-check each distinct swept value once against the composed (typed) config."""
        marker = (gkey, key, canonical_values({"v": value}))
        if marker in self._checked:
            return
        self._checked.add(marker)
        probe = self._probes.get(gkey)
        if probe is None:  # one copy per group combination: each check overwrites one key
            probe = self._probes[gkey] = copy.deepcopy(cfg)
        try:
            OmegaConf.update(probe, key, value, merge=False, force_add=bool(self.prefixes.get(key)))
        except Exception as exc:
            raise ConfigError(f"bad value {value!r} for '{key}': {exc}".replace("\n", " ")
                              ) from None


def axes_of(values: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(every key the runs' values have, those that differ between runs), in first-seen
    order: a sweep's ``axes`` and ``varying``. A key some runs set and others leave out differs
    (absent is a value of its own), so no two settings are ever merged as one."""
    distinct: dict[str, set[str]] = {}
    present: dict[str, int] = {}
    total = 0
    for run_values in values:
        total += 1
        for key, value in run_values.items():
            distinct.setdefault(key, set()).add(canonical_values({"v": value}))
            present[key] = present.get(key, 0) + 1
    return list(distinct), [k for k, vals in distinct.items()
                            if len(vals) > 1 or present[k] < total]


def axes_after(axes: list[str], varying: list[str], first: dict[str, Any] | None,
               values: Iterable[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """``axes_of`` of earlier runs and ``values`` together, from the earlier runs' ``axes``,
    ``varying`` and ``first`` run's values (None: there were none) alone: adding a run costs
    what the run holds, not what the sweep holds."""
    values = list(values)
    if first is None:
        return axes_of(values)
    keys = list(axes)
    differ = set(varying)
    fixed = {k: canonical_values({"v": first[k]}) for k in keys if k not in differ}
    for run_values in values:
        for key in keys:
            if key not in run_values:
                differ.add(key)  # absent here, present before
        for key, value in run_values.items():
            if key not in fixed and key not in differ:
                if key in keys:
                    continue
                keys.append(key)  # absent from every earlier run
                differ.add(key)
            elif key in fixed and canonical_values({"v": value}) != fixed[key]:
                differ.add(key)
                del fixed[key]
    return keys, [k for k in keys if k in differ]


# manifests whose "varying" counts an absent key as differing (older ones are recomputed)
VARYING_RULE = 2


# settings that say how far a sweep goes, not what it is: the same sweep goes further with them
EXTENT_KEYS = ("sweep.n_trials", "sweep.target", "sweep.patience", "sweep.timeout")


def fingerprint_overrides(overrides: Sequence[str], config_name: str,
                          extent: bool = False) -> str:
    """A hash of the command's overrides (``extent``: with ``sweep.n_trials`` and the like, as
    sweep names were hashed before a study could be extended)."""
    keep = sorted(o for o in overrides
                  if o.lstrip("+~").split("=")[0].split(".")[0] not in _NOT_FINGERPRINTED
                  and (extent or o.lstrip("+~").split("=")[0] not in EXTENT_KEYS))
    return hashlib.sha1(json.dumps([config_name, keep]).encode()).hexdigest()[:8]


def plan_fingerprint(runs: Sequence[RunSpec]) -> str:
    h = hashlib.sha1()
    for run in runs:
        h.update(run.id.encode())
        h.update(canonical_values(run.config).encode())
    return h.hexdigest()


def all_kinds() -> tuple[str, ...]:
    """Every sweep kind a ``sweep.kind`` may name."""
    return (*SWEEP_KINDS, *PLANNERS)


def expand(composer: Composer, args: Sequence[str], config_name: str = "config",
           limits: Limits = NO_LIMITS) -> Plan:
    """Expand command-line overrides into a Plan (nothing is written).

    Refuses (before anything is written) a sweep beyond ``limits`` and any run config holding
    the value of a known secret (``runner.config.secrets``).
    """
    parsed = parse_overrides(args)
    cli_axes = [_axis_from_override(o, True, limits) for o in parsed if o.is_sweep_override()]
    plain = [str(o.input_line) for o in parsed if not o.is_sweep_override()]
    plain_keys = {override_key(o) for o in parsed if not o.is_sweep_override()}
    base = composer.compose(plain, config_name)
    sources = {group: str(path) for group in composer.choices
               if (path := composer.source(group)) is not None}
    planner = PLANNERS.get(str(base.sweep.get("kind"))) if "sweep" in base else None
    if planner is not None:  # a kind whose runs come later (an adaptive study)
        from runner.execution.tasks import load_task

        plan: Plan = load_task(planner)(composer, base, list(args), plain, cli_axes,
                                        config_name, sources)
        limits.check(plan.run_budget(), f"the {plan.kind} sweep")
        return plan
    notes: list[str] = []
    if "sweep" in base:
        spec = validate(base.sweep, SweepConf, "sweep")
        if spec.kind not in SWEEP_KINDS:
            raise SweepError(f"sweep.kind='{spec.kind}' is not one of "
                             f"{', '.join(all_kinds())}")
        defaults = _task_axes(base, spec.kind)
        if spec.kind == "list":
            spec.runs = spec.runs or list(defaults or [])
            config_axes = []
        else:
            config_axes = _params_axes({**(defaults or {}), **spec.params}, limits)
        kind = spec.kind
    else:
        spec, config_axes = SweepConf(kind="grid"), []
        kind = "grid" if cli_axes else "single"
    axes = _merge_axes(config_axes, cli_axes, plain_keys)
    axes = _seeds_axis(spec, axes, {a.key for a in cli_axes}, limits, _set_values(parsed))
    if kind == "random" and not any(not a.crossed for a in axes):
        raise SweepError("+sweep=random has nothing to draw from: give distributions in "
                         "sweep.params, the task's axes.random or the command line (e.g. "
                         "'task.lr=tag(log,interval(1e-4,1e-1))')")
    values_list = (_expand_values(spec, axes, notes, limits, plain_keys)
                   if (axes or kind == "list") else [{}])
    limits.check(len(values_list), "the sweep")

    builder = _ConfigBuilder(composer, plain, {a.key: a.prefix for a in axes}, config_name)
    builder.prepare(values_list)
    runs = []
    for values in values_list:
        runs.append(RunSpec(run_id(values), run_dirname(values), values, builder.build(values)))
    execution = builder.execution()
    add_env_names((execution.get("runner") or {}).get("secret_env") or [])
    _refuse_secrets(runs, execution)  # before the filter: its outcome never depends on one
    runs = _select(runs, spec, notes, limits)
    _check_unique(runs)

    keys, varying = axes_of(r.values for r in runs)
    name = _sweep_name(base, kind, args, config_name)
    return Plan(
        name=str(name), kind=kind, runs=runs, axes=keys, varying=varying,
        execution=execution, overrides=list(args),
        fingerprint=plan_fingerprint(runs), notes=notes, sources=sources,
    )


def _refuse_secrets(runs: list[RunSpec], execution: dict[str, Any]) -> None:
    """A sweep whose configs hold a known secret's value (e.g. through ``${oc.env:...}``) is
    never frozen: the error names the key and where the secret comes from, never the value."""
    hit = find_secret(execution, *(run.config for run in runs))
    if hit:
        key, source = hit
        raise ConfigError(f"'{key}' holds the value of the secret {source}: secrets are never "
                          "written into a sweep's configs; read it in the task instead "
                          "(e.g. os.environ)")


def _task_axes(base: DictConfig, kind: str) -> Any:
    """The task's default axes for this kind of sweep (``axes.<kind>``), if it has any."""
    node = OmegaConf.select(base, f"axes.{kind}", default=None)
    if node is None:
        return None
    value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    wanted = list if kind == "list" else dict
    if not isinstance(value, wanted):
        raise SweepError(f"axes.{kind} (the task's default axes) must be a "
                         f"{'list of settings' if kind == 'list' else 'mapping of key: values'}"
                         f", got {type(value).__name__}")
    return value


def _sweep_name(base: DictConfig, kind: str, args: Sequence[str], config_name: str) -> str:
    """``runner.name``, else ``<task.name>-<kind>-<hash of the command>``: one plain name."""
    given = OmegaConf.select(base, "runner.name", default=None)
    if given is not None and given != "":
        return check_component(str(given), "runner.name")
    task_name = check_component(str(OmegaConf.select(base, "task.name", default=None) or "run"),
                                "task.name")
    return f"{task_name}-{kind}-{fingerprint_overrides(list(args), config_name)}"


def legacy_names(base: DictConfig, kind: str, args: Sequence[str], config_name: str
                 ) -> list[str]:
    """The names older versions gave the same sweep (its extent hashed in): a sweep found
    under one of them is resumed there."""
    if OmegaConf.select(base, "runner.name", default=None) or not any(
            a.lstrip("+~").split("=")[0] in EXTENT_KEYS for a in args):
        return []
    task_name = str(OmegaConf.select(base, "task.name", default=None) or "run")
    return [f"{task_name}-{kind}-{fingerprint_overrides(list(args), config_name, extent=True)}"]


def _select(runs: list[RunSpec], spec: SweepConf, notes: list[str],
            limits: Limits) -> list[RunSpec]:
    if spec.filter:
        keep = compile_filter(spec.filter, predicates=limits.predicates)
        before = len(runs)
        runs = [r for r in runs if keep(r.values, r.config)]
        notes.append(f"filter '{spec.filter}' kept {len(runs)} of {before} runs (the sweep "
                     "holds only these: a command without the filter is another sweep)")
    if spec.subset is not None:  # (>= 1: the schema's range)
        if spec.subset > len(runs):
            raise SweepError(f"sweep.subset={spec.subset} but the sweep has only {len(runs)} "
                             "run(s)" + (" left after sweep.filter" if spec.filter else "")
                             + ": give a smaller subset, or none")
        if spec.subset < len(runs):
            picked = sorted(random.Random(spec.subset_seed).sample(range(len(runs)), spec.subset))
            notes.append(f"random subset of {spec.subset} of {len(runs)} runs "
                         f"(sweep.subset_seed={spec.subset_seed})")
            runs = [runs[i] for i in picked]
    if not runs:
        raise SweepError(f"sweep.filter '{spec.filter}' keeps none of the sweep's runs"
                         if spec.filter else "the sweep has no runs")
    return runs


def _check_unique(runs: list[RunSpec]) -> None:
    seen: dict[str, RunSpec] = {}
    for run in runs:
        other = seen.get(run.id)
        if other is not None:
            if other.values == run.values:
                raise SweepError(f"the sweep lists the same run twice: {run.values}")
            raise SweepError(f"run id collision between {other.values} and {run.values}")
        seen[run.id] = run
