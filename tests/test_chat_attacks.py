"""Chat text is data, never code: a table of attacks through the bot's real /launch path
(``BotLogic.launch``: permission, ``parse_chat_overrides``, ``Launches.plan`` with the bot's
limits and the effect check of ``ChatPolicy``, then the subprocess it would start).

Every attack must be refused with a message naming what is refused, and nothing may happen: no
process started, no file created or changed anywhere in the project (outputs/ included), no
secret in the message."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import psutil
import pytest

from conftest import Project
from runner.errors import RunnerError
from runner.integrations.discord_bot.config import BotConf
from runner.integrations.discord_bot.logic import BotLogic, Caller

USER, CHANNEL = 4242, 777
TOKEN = "MTAwMDAwMDAwMDAwMDAwMDAx.attack-bot-token.abcdefghijklmnopqrstuvwxyz0123"
WANDB_KEY = "wandbkey-0123456789abcdef0123456789abcdef"
HOOK_TOKEN = "hooktoken-SECRET-abcdefghijklmnopqrstuvwxyz"
HOOK = "/".join(["https://discord.com/api/webhooks", "1" * 18, HOOK_TOKEN])  # (built: no
# webhook-shaped literal in the repository)
SENSITIVE = "SENSITIVE-admin-value-0123456789"  # a value in the admin's own config
SECRETS = (TOKEN, WANDB_KEY, HOOK, HOOK_TOKEN, TOKEN.split(".")[-1])

OTHER_TASK = """
name: other
fn: os:system
lr: 0.1
"""

LONG = "task.lr=0.1 " * 200
STUDY = ("task=toy +sweep=optuna sweep.metric=score sweep.mode=max sweep.n_trials=1"
         " 'task.lr=interval(0.01,0.1)'")


def flt(expr: str) -> str:
    """A 2-run grid with ``sweep.filter=<expr>``, quoted for chat (shlex) and Hydra."""
    assert '"' not in expr
    return "task=toy +sweep=grid seed=1,2 " + shlex.quote(f'sweep.filter="{expr}"')


ATTACKS: list[tuple[str, str]] = [
    # code in the bot process during planning
    ("+sweep=grid seed=1,2 sweep.filter=logging.config:dictConfig",
     "importable predicates are not accepted"),
    ("+sweep=grid seed=1,2 sweep.filter=sys:exit", "importable predicates are not accepted"),
    ("+sweep=grid +version=choice(1) "
     "'+handlers=choice({h: {class: subprocess.Popen, args: [touch, pwned]}})' "
     "sweep.filter=logging.config:dictConfig", "importable predicates are not accepted"),
    (flt("__import__('os').system('touch pwned')"), "only abs, min"),
    (flt("(lambda: 1)()"), "may be called"),
    (flt("lambda: 1"), "Lambda is not allowed"),
    (flt("seed.__class__"), "private attribute"),
    (flt("task.name.upper"), "only config keys have"),
    (flt("[x for x in (1, 2)]"), "is not allowed"),
    # task.fn and runner.* reached through a parent, an axis, a list sweep, a group or a package
    ("'+task={fn: \"os:system\"}'", "task"),
    ("'task={fn: \"os:system\"}'", "task"),
    ("+sweep=grid '+sweep.params={task.fn: \"logging.config:dictConfig\"}'",
     "'task.fn' cannot be changed from chat"),
    ("+sweep=list 'sweep.runs=[{task.fn: \"os:system\"}]'",
     "'task.fn' cannot be changed from chat"),
    ("'runner={preload: [some_module]}'", "cannot be changed from chat"),
    ("'runner={output_dir: /abs}'", "cannot be changed from chat"),
    ("task=other", "bot.tasks: toy"),
    ("+sweep=grid task=toy,other", "cannot be changed from chat"),
    ("launcher=slurm", "'launcher._target_' cannot be changed from chat"),
    ("launcher=pinned", "'launcher._target_' cannot be changed from chat"),
    ("+task@runner=toy", "package overrides"),
    ("'+toy@_global_=toy'", "package overrides"),
    ("task.fn=os:system", "'task.fn' cannot be set from chat"),
    ("~task.fn", "'task.fn' cannot be set from chat"),
    ("~task", "cannot be changed from chat"),
    ("+task.model._target_=os.system", "'task.model._target_' cannot be changed"),
    ("'launcher.setup=[\"touch pwned\"]'", "'launcher.setup' cannot be set from chat"),
    ("launcher.python=/bin/sh", "'launcher.python' cannot be set from chat"),
    ("'hydra.searchpath=[file:///tmp]'", "'hydra.searchpath' cannot be set from chat"),
    ("hydra/launcher=basic", "'hydra/launcher' cannot be set from chat"),
    ("runner.debug=true", "'runner.debug' cannot be set from chat"),
    ("tracker=wandb", "'tracker' cannot be set from chat"),
    ("+notifier=discord", "'notifier' cannot be set from chat"),
    ("runner.heartbeat_s=0.001", "'runner.heartbeat_s' cannot be changed from chat"),
    ("seed=1 +extra.key_path=x", "looks like a token or key"),
    ("+top=1", "'top' cannot be changed from chat"),
    # host secrets through interpolation, or typed in
    ("+task.k='${oc.env:WANDB_API_KEY}'", "interpolations"),
    ("runner.name='${oc.env:DISCORD_BOT_TOKEN}'", "interpolations"),
    ("+task.k=${task.lr}", "interpolations"),
    ("'+task.x={a: ${oc.env:HOME}}'", "interpolations"),
    (f"task.lr={TOKEN}", "contains a secret"),
    (f"+task.note={HOOK_TOKEN}", "contains a secret"),
    (flt("int(task.note[0:9]) > 0"), "failed on run"),
    (flt("task.note + 1 > 0"), "failed on run"),
    # paths outside outputs/
    ("runner.name=/tmp/abs", "path separator"),
    ("runner.name=../../x", "path separator"),
    ("runner.name=..", "'.' or '..'"),
    ("runner.name=.discord-bot", "hidden"),
    ("'runner.name=a\nb'", "cannot parse override"),
    ("'runner.name=\"a\x01b\"'", "control character"),
    ("task.name=../../x", "task.name"),
    ("runner.output_dir=/tmp", "'runner.output_dir' cannot be set from chat"),
    # unbounded work
    (flt("9**9**9 > 0"), "too costly"),
    (flt("'a' * 10**10 == ''"), "too costly"),
    (flt("'%0999999999d' % 1 == ''"), "'%' formatting"),
    (flt("str(10**5000) == 1"), "too costly"),
    (flt("len(str(2**4000 * 2**4000)) > 0"), "too costly"),
    ("'seed=range(0,1000000000)'", "at most 500 are allowed here (bot.max_runs)"),
    ("+sweep=grid sweep.seeds=100000000", "at most 500"),
    ("+sweep=random sweep.num_samples=100000000", "at most 500"),
    ("+sweep=grid task.lr=1,2,3,4,5 'seed=range(200)'", "would give 1000 runs"),
    (LONG, "at most 2000"),
    ("+task.x=" + "[" * 900 + "]" * 900, "nested too deeply"),
    ("launcher.max_parallel=-3", "launcher.max_parallel"),
    # a study: trials come later, yet what it can vary is judged (its template, its space)
    (f"{STUDY} '+task={{fn: \"logging.config:dictConfig\"}}' +version=1 "
     "'+handlers={h: {class: subprocess.Popen, args: [touch, pwned]}}'", "task"),
    (f"{STUDY} +version=1", "'version' cannot be changed from chat"),
    (f"{STUDY} 'runner={{output_dir: /elsewhere}}'", "cannot be changed from chat"),
    (f"{STUDY} '+runner={{preload: [some_module]}}'", "cannot be changed from chat"),
    (f"{STUDY} sweep.n_trials=100000", "at most 500 are allowed here (bot.max_runs)"),
    (f"{STUDY} 'task.name=choice(a,b)'", "'task.name' cannot be changed from chat"),
    (f"{STUDY} '+sweep.params={{task.fn: \"choice(os:system,os:popen)\"}}'",
     "'task.fn' cannot be changed from chat"),
    (f"{STUDY} '+extra=choice(1,2)'", "'extra' cannot be changed from chat"),
    (f"{STUDY} '+task.model._target_=choice(os.system,os.popen)'", "cannot be changed from chat"),
    # not overrides at all
    ("--config-dir=/etc", "options are not taken from chat"),
    ("-m task.lr=1", "options are not taken from chat"),
    ("status /etc", "cannot parse override 'status'"),
]


@pytest.fixture
def attack_bot(project: Project, monkeypatch: pytest.MonkeyPatch) -> BotLogic:
    (project.root / "conf" / "task" / "other.yaml").write_text(OTHER_TASK)
    with open(project.root / "conf" / "task" / "toy.yaml", "a") as f:
        f.write(f"note: {SENSITIVE}\n")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", TOKEN)
    monkeypatch.setenv("WANDB_API_KEY", WANDB_KEY)
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", HOOK)
    conf = BotConf(allowed_users=[USER], channels=[CHANNEL], workdir=str(project.root),
                   tasks=["toy"])
    return BotLogic(conf)


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != "__pycache__"]
        for name in [*filenames, *dirnames]:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            out[os.path.relpath(path, root)] = (st.st_size, st.st_mtime)
    return out


def test_the_table_has_at_least_40_attacks() -> None:
    assert len(ATTACKS) >= 40 and len({a for a, _ in ATTACKS}) == len(ATTACKS)


@pytest.mark.parametrize("text, message", ATTACKS, ids=[f"{i:02d}" for i in range(len(ATTACKS))])
def test_chat_attack_is_refused_and_nothing_happens(attack_bot: BotLogic, project: Project,
                                                    text: str, message: str) -> None:
    before = snapshot(project.root)
    children = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(RunnerError) as info:
        attack_bot.launch(Caller(USER, CHANNEL, name="attacker"), text)
    said = str(info.value)
    assert message in said, said
    assert not any(s in said for s in (*SECRETS, SENSITIVE[:9])), said
    assert attack_bot.launches.items == []
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= children
    assert snapshot(project.root) == before
    assert not (project.root / "outputs").exists()


def test_what_chat_may_change_still_launches(attack_bot: BotLogic, project: Project) -> None:
    """The allowlist is not a wall: hyperparameters, seeds, sweep settings, a name."""
    plan = attack_bot.launches.plan(
        ["task=toy", "+sweep=grid", "task.lr=0.1,0.2", "seed=1,2", "+task.width=8",
         "sweep.filter='task.lr < 0.15'", "launcher.max_parallel=2", "runner.name=ok-1"])
    assert plan.name == "ok-1" and len(plan.runs) == 2  # type: ignore[attr-defined]
    assert not (project.root / "outputs").exists()


# one chat command per sweep kind: a kind added to the registry without a line here fails
KIND_COMMANDS = {
    "single": "task=toy",
    "grid": "task=toy +sweep=grid seed=1,2",
    "random": "task=toy +sweep=random sweep.num_samples=2 'task.lr=interval(0.01,0.1)'",
    "list": "task=toy +sweep=list 'sweep.runs=[{task.lr: 0.1}, {task.lr: 0.2}]'",
    "optuna": STUDY,
}
FORBIDDEN_EFFECTS = [
    ("'+task={fn: \"os:system\"}'", "task"),
    ("'runner={output_dir: /elsewhere}'", "cannot be changed from chat"),
    ("'+runner={preload: [some_module]}'", "cannot be changed from chat"),
    ("+extra=1", "'extra' cannot be changed from chat"),
]


def test_every_sweep_kind_has_a_chat_case() -> None:
    from runner.planning.sweep import all_kinds

    assert set(KIND_COMMANDS) == {"single", *all_kinds()}


@pytest.mark.parametrize("kind", sorted(KIND_COMMANDS))
@pytest.mark.parametrize("extra, message", FORBIDDEN_EFFECTS,
                         ids=[str(i) for i in range(len(FORBIDDEN_EFFECTS))])
def test_every_sweep_kind_is_judged_by_its_effect(attack_bot: BotLogic, project: Project,
                                                  kind: str, extra: str, message: str) -> None:
    """The same forbidden change through every kind is refused; the kind's own command alone
    is accepted (so the refusal is the change's, not the kind's)."""
    plan = attack_bot.launches.plan(shlex.split(KIND_COMMANDS[kind]))
    assert plan.kind == kind  # type: ignore[attr-defined]
    with pytest.raises(RunnerError) as info:
        attack_bot.launch(Caller(USER, CHANNEL), f"{KIND_COMMANDS[kind]} {extra}")
    assert message in str(info.value), str(info.value)
    assert attack_bot.launches.items == [] and not (project.root / "outputs").exists()


def test_a_plan_with_nothing_to_judge_is_refused(attack_bot: BotLogic) -> None:
    from runner.integrations.discord_bot.chat_policy import ChatPolicy
    from runner.planning.sweep import Plan

    empty = Plan(name="x", kind="new", runs=[], axes=[], varying=[], execution={},
                 overrides=[], fingerprint="")
    with pytest.raises(RunnerError, match="no runs and no template"):
        ChatPolicy().check(None, [], empty)


def test_a_study_counts_its_trials_against_max_runs(attack_bot: BotLogic) -> None:
    plan = attack_bot.launches.plan(shlex.split(STUDY.replace("n_trials=1", "n_trials=500")))
    assert plan.run_budget() == 500  # type: ignore[attr-defined]
    with pytest.raises(RunnerError, match="501 runs; at most 500"):
        attack_bot.launches.plan(shlex.split(STUDY.replace("n_trials=1", "n_trials=501")))


def test_a_proposal_outside_the_space_is_refused(project: Project) -> None:
    """Trials are built only from the searched keys, inside their distributions."""
    import json

    from runner.study.source import StudyDefinition

    project.run("+sweep=optuna", "sweep.metric=score", "sweep.mode=max", "sweep.n_trials=1",
                "task.lr=interval(0.01,0.1)", "runner.name=s", check=True)
    store = type("S", (), {"root": project.root / "outputs" / "s"})()
    definition = StudyDefinition(store)  # type: ignore[arg-type]
    assert definition.config({"task.lr": 0.05})["task"]["lr"] == 0.05
    for bad in ({"task.lr": 0.05, "task.fn": "os:system"}, {"task.fn": "os:system"},
                {"task.lr": 5.0}, {"task.lr": "x"}):
        with pytest.raises(RunnerError, match="refused"):
            definition.config(bad)
    assert json.loads((store.root / "study.json").read_text())["space"]


HOSTILE_FILTERS = [
    "[[[[0]*10000]*10000]*10000]*10000 == [[[[0]*10000]*10000]*10000]*10000",
    "len(str([[0]*10000]*10000)) > 0",
    "[[0]*10000]*10000 in []",
    "((([0]*100)*10,)*10)*10 == 1",
    "min([[0]*9999]*100) == 0",
    "str([[0]*2000]*5) == ''",
    "[[0]*1000]*99 == [[0]*1000]*99 and [[0]*1000]*99 == [[0]*1000]*99 and seed == 99",
]


def test_hostile_filters_never_stop_the_bots_event_loop(attack_bot: BotLogic) -> None:
    """Each operation's cost is bounded before it runs: a heartbeat on the bot's event loop
    keeps ticking while hostile filters are planned in a worker thread (as the bot does), and
    each is answered within seconds. A harmless command first: the first one imports
    Hydra's plugins (a one-time pause of the loop, not a filter's cost)."""
    import asyncio
    import time

    with pytest.raises(RunnerError, match="keeps none"):
        attack_bot.launch(Caller(USER, CHANNEL), flt("seed == 99"))

    async def main() -> tuple[list[float], list[float]]:
        gaps: list[float] = []
        took: list[float] = []
        done = asyncio.Event()

        async def heartbeat() -> None:
            last = time.monotonic()
            while not done.is_set():
                await asyncio.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        beat = asyncio.create_task(heartbeat())
        for expr in HOSTILE_FILTERS:
            start = time.monotonic()
            try:
                await asyncio.to_thread(attack_bot.launch, Caller(USER, CHANNEL), flt(expr))
            except RunnerError as exc:
                assert "too costly" in str(exc) or "keeps none" in str(exc), str(exc)
            took.append(time.monotonic() - start)
        done.set()
        await beat
        return gaps, took

    import gc

    gc.disable()  # (a full collection of this process's objects pauses every thread: not a
    try:          # filter's cost, and on a loaded machine it reached 0.4 s)
        gaps, took = asyncio.run(main())
    finally:
        gc.enable()
    assert max(took) < 10, took
    assert len(gaps) > 20 and max(gaps) < 0.5, max(gaps)
    assert attack_bot.launches.items == []


@pytest.mark.parametrize("expr", HOSTILE_FILTERS[:3])
def test_hostile_filters_end_the_command_line_at_once(project: Project, expr: str) -> None:
    import time

    start = time.monotonic()
    proc = project.run("+sweep=grid", "seed=1,2", f'sweep.filter="{expr}"', timeout=60)
    assert proc.returncode != 0 and "too costly" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2, proc.stderr
    assert time.monotonic() - start < 30
    assert not (project.root / "outputs").exists()


LEAKY_TASK = '''
from pathlib import Path

def main(cfg):
    token = Path(cfg.task.secret_file).read_text().strip()   # an admin's start-bot.sh, say
    return {"score": 1.0, "note": "the bot runs with " + token}
'''


def test_a_sweep_the_bot_starts_recognises_the_bots_token_without_holding_it(
        project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The launched sweep never gets the token (only its digest), yet a task that finds the
    token in a file cannot make runner write it anywhere."""
    token = "MTAwMDAwMDAwMDAwMDAwMDAx.GaBcDe." + "q" * 32
    monkeypatch.setenv("DISCORD_BOT_TOKEN", token)
    (project.root / "leaky.py").write_text(LEAKY_TASK)
    (project.root / "start-bot.sh").write_text(f"export DISCORD_BOT_TOKEN={token}\n")
    bot = BotLogic(BotConf(allowed_users=[USER], channels=[CHANNEL],
                           workdir=str(project.root), tasks=["toy"],
                           chat_keys=["task.*", "!task.name", "seed", "runner.name"]))
    # the task function is the admin's (a config), the file it reads is the admin's
    with open(project.root / "conf" / "task" / "toy.yaml") as f:
        conf = f.read().replace("fn: toy:main", "fn: leaky:main")
    (project.root / "conf" / "task" / "leaky.yaml").write_text(
        conf.replace("name: toy", "name: leaky") + f"secret_file: {project.root}/start-bot.sh\n")
    bot.launches.policy.tasks.append("leaky")
    bot.launch(Caller(USER, CHANNEL), "task=leaky runner.name=leak")
    (item,) = bot.launches.items
    assert item.proc.wait(60) == 0, item.log.read_text()
    written = [p for p in (project.root / "outputs").rglob("*") if p.is_file()
               and token.encode() in p.read_bytes() and p.name not in ("stdout.log",
                                                                     "stderr.log")]
    assert written == []
    summary = (project.root / "outputs" / "leak").rglob("COMPLETED")
    assert any("DISCORD_BOT_TOKEN=***" in p.read_text() for p in summary)
