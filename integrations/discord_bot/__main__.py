"""``python -m runner.integrations.discord_bot [bot.key=value ...]``: start the bot.

Settings come from ``conf/discord_bot.yaml`` (a ``./conf/discord_bot.yaml`` of yours wins) and
Hydra overrides on the command line; the token comes from ``$DISCORD_BOT_TOKEN`` or
``bot.token_file``, never from a config or a message.
"""

from __future__ import annotations

import logging
import os
import sys

from runner.config.compose import composer, to_container
from runner.config.schema import validate
from runner.config.secrets import RedactingFilter, install_hooks, read_secret, redact
from runner.errors import RunnerError
from runner.integrations.discord_bot.config import BotConf


def load_conf(overrides: list[str]) -> BotConf:
    with composer() as comp:
        cfg = to_container(comp.compose(overrides, "discord_bot"))
    return validate(cfg.get("bot"), BotConf, "bot")


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # a program of its own: redacted tracebacks, main thread or any other
        install_hooks()
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        conf = load_conf(argv)
        token = read_secret("Discord bot token", conf.token_env, conf.token_file)
        if not conf.allowed_users and not conf.allowed_roles:
            print("note: bot.allowed_users and bot.allowed_roles are empty: nobody may launch, "
                  "resume, cancel or subscribe", file=sys.stderr)
    except RunnerError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    from runner.integrations.discord_bot.app import RunnerBot
    from runner.integrations.discord_bot.launches import open_log
    from runner.integrations.discord_bot.logic import BotLogic
    from runner.integrations.discord_bot.wandb_source import teardown_wandb

    logic = BotLogic(conf)
    os.close(open_log(logic.log_dir / "bot.log", conf.private_files))  # (0600 unless not private)
    handler = logging.FileHandler(logic.log_dir / "bot.log")
    plain = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    handler.addFilter(RedactingFilter())  # discord.py's own log lines too
    bot = RunnerBot(logic)
    try:  # (the formatter given: discord.py would colour a log file in a container)
        bot.run(token, log_handler=handler, log_formatter=plain, log_level=logging.INFO)
    except Exception as exc:  # no network, Discord down, a revoked token: one line, not 75
        import discord

        what = ("Discord refused the bot's token" if isinstance(exc, discord.LoginFailure)
                else "cannot reach Discord")
        print(f"error: {what} ({type(exc).__name__}: {redact(str(exc))[:200]}); the bot "
              f"stopped (details in {logic.log_dir / 'bot.log'})", file=sys.stderr)
        logging.getLogger("runner.discord_bot").error("stopped: %s", redact(repr(exc)))
        return 1
    finally:
        teardown_wandb()  # (WandB's exit hook could wait on its service for 10 minutes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
