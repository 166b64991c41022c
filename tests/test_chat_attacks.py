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
HOOK = f"https://discord.com/api/webhooks/123456789012345678/{HOOK_TOKEN}"
SENSITIVE = "SENSITIVE-admin-value-0123456789"  # a value in the admin's own config
SECRETS = (TOKEN, WANDB_KEY, HOOK, HOOK_TOKEN, TOKEN.split(".")[-1])

OTHER_TASK = """
name: other
fn: os:system
lr: 0.1
"""

LONG = "task.lr=0.1 " * 200


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
