"""The bot's settings (``bot.*``), validated like every runner config section."""

from __future__ import annotations

from dataclasses import dataclass, field

from runner.integrations.discord_bot.chat_policy import DEFAULT_CHAT_KEYS


@dataclass
class BotConf:
    allowed_users: list[int] = field(default_factory=list)  # may launch, resume, cancel, subscribe
    allowed_roles: list[int] = field(default_factory=list)  # members of these roles may too
    channels: list[int] = field(default_factory=list)  # ... in these channels only
    outputs: list[str] = field(default_factory=lambda: ["outputs"])  # where sweeps are found
    workdir: str | None = None  # where /launch runs `python -m runner` (default: here)
    token_env: str = "DISCORD_BOT_TOKEN"
    token_file: str | None = None
    state_file: str = "outputs/.discord-bot/state.json"  # subscriptions: survive restarts
    log_dir: str = "outputs/.discord-bot"  # bot.log (refusals, errors), launch logs
    guild_id: int | None = None  # sync commands to one server (instant) instead of globally
    tick_s: float = 30.0  # how often subscriptions are checked
    max_launches: int = 4  # sweeps started from chat and still running, at most
    wandb_project: str | None = None  # entity/project for source:wandb
    wandb_key_env: str = "WANDB_API_KEY"
    # the WandB projects source:wandb and /watch may read (fnmatch patterns of entity/project)
    wandb_projects: list[str] = field(default_factory=lambda: ["*"])
    wandb_public: bool = False  # false: source:wandb needs a user allowed to steer
    wandb_timeout_s: float = field(default=20.0, metadata={"min": 1.0})  # per WandB query
    wandb_cache_s: float = field(default=30.0, metadata={"min": 0.0})  # answers reused this long
    # WandB queries of one user / one channel running at once, at most
    wandb_per_user: int = field(default=2, metadata={"min": 1})
    wandb_per_channel: int = field(default=4, metadata={"min": 1})
    watch_file: str = "outputs/.discord-bot/watches.json"  # /watch: projects, cursors, outbox
    watch_s: float = field(default=60.0, metadata={"min": 1.0})  # how often a watch polls WandB
    watch_digest: int = field(default=5, metadata={"min": 1})  # more changes at once: one digest
    max_watches: int = field(default=10, metadata={"min": 1})  # per channel
    read_channels: list[int] | None = None  # read-only commands here (null: bot.channels)
    chat_keys: list[str] = field(default_factory=lambda: list(DEFAULT_CHAT_KEYS))
    tasks: list[str] = field(default_factory=list)  # task configs /launch may choose
    max_runs: int = 500  # runs one /launch may start, at most
    # an admin's function that starts a checked /launch its own way (a cluster queue, ...):
    # "pkg.mod:fn", called as fn(overrides, name=..., runs=..., user_id=..., workdir=...)
    launch_fn: str | None = None
    # the bot's state, bot.log and the launch logs readable by the bot's user only (0600, their
    # folders 0700); false: as the umask says
    private_files: bool = True
