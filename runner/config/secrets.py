"""Secrets (webhook URLs, tokens, keys): read from the environment or a file, never from a config.

A config names *where* a secret is (``webhook_url_env: DISCORD_WEBHOOK_URL`` or
``webhook_url_file: ~/.config/runner/webhook``), never the secret itself, so manifests and config
snapshots cannot contain it.

Every runner process knows the same set of secrets, because the set is defined by the
environment, which every process inherits:

* the values of the well-known variables (``DISCORD_WEBHOOK_URL``, ``DISCORD_BOT_TOKEN``,
  ``WANDB_API_KEY``) and of every variable named in ``$RUNNER_SECRET_ENV`` (comma-separated;
  ``runner.secret_env=[HF_TOKEN]`` adds to it),
* the contents of every file named in ``$RUNNER_SECRET_FILES`` (``read_secret`` adds the files it
  reads), and whatever this process ``register``\\ ed.

``redact()`` replaces each of them (and its long path-like pieces, such as a webhook's token) in
any text runner writes or sends: every file written through ``runner.storage.atomic``, metrics
lines, messages, logs, replies and errors. Values shorter than ``MIN_LENGTH`` are not treated as
secrets (they would redact ordinary words).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.errors import ConfigError

WELL_KNOWN = ("DISCORD_WEBHOOK_URL", "DISCORD_BOT_TOKEN", "WANDB_API_KEY")
ENV_NAMES = "RUNNER_SECRET_ENV"  # more variable names, comma-separated
ENV_FILES = "RUNNER_SECRET_FILES"  # files holding secrets, os.pathsep-separated
# sha256 digests of secrets a process must recognise but not hold (comma-separated)
ENV_DIGESTS = "RUNNER_SECRET_DIGESTS"
MIN_LENGTH = 8
MASK = "***"
_MIN_PIECE = 12  # parts of a secret at least this long are redacted on their own too

_registered: dict[str, str] = {}  # secret -> where it came from
_file_cache: dict[str, tuple[float, str]] = {}  # path -> (mtime, content)


def read_secret(what: str, env: str | None = None, file: str | None = None) -> str:
    """The secret from ``$env`` or from ``file``; a clear error naming where it was looked for.

    The place is published to child processes (``$RUNNER_SECRET_ENV`` / ``$RUNNER_SECRET_FILES``),
    so that every process runner starts afterwards redacts it too.
    """
    value = None
    if env:
        value = os.environ.get(env)
        if value:
            add_env_names([env])
    if not value and file:
        path = Path(file).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read the secret file {path}: "
                              f"{exc.strerror}") from None
        _add_to_list(ENV_FILES, [str(path.resolve())], os.pathsep)
    if not value:
        where = " or ".join(x for x in (f"${env}" if env else "", file or "") if x)
        raise ConfigError(f"{what}: no secret found in {where or 'any configured place'}; "
                          "set the environment variable or point to a file (never put it in "
                          "a config)")
    register(value, f"${env}" if env and os.environ.get(env) == value else str(file))
    return value


def add_env_names(names: Iterable[str]) -> None:
    """Treat the values of these environment variables as secrets, here and in every child."""
    _add_to_list(ENV_NAMES, [n for n in names if n], ",")


def _add_to_list(var: str, items: list[str], sep: str) -> None:
    have = [x for x in os.environ.get(var, "").split(sep) if x]
    new = [x for x in items if x not in have]
    if new:
        os.environ[var] = sep.join([*have, *new])


def register(secret: str, source: str = "a secret this process read") -> None:
    """Treat ``secret`` as a secret in this process (children learn it through the env)."""
    if secret and len(secret) >= MIN_LENGTH:
        _registered.setdefault(secret, source)


def env_names() -> list[str]:
    extra = [n.strip() for n in os.environ.get(ENV_NAMES, "").split(",") if n.strip()]
    return list(dict.fromkeys([*WELL_KNOWN, *extra]))


def _file_secret(path: str) -> str:
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return ""
    cached = _file_cache.get(path)
    if cached is None or cached[0] != mtime:
        try:
            cached = (mtime, Path(path).read_text().strip())
        except (OSError, UnicodeDecodeError):
            cached = (mtime, "")
        _file_cache[path] = cached
    return cached[1]


def known() -> dict[str, str]:
    """Every secret this process knows -> where it comes from (``$VAR`` or a file path)."""
    out = dict(_registered)
    for name in env_names():
        value = os.environ.get(name, "")
        if len(value) >= MIN_LENGTH:
            out[value] = f"${name}"
    for path in os.environ.get(ENV_FILES, "").split(os.pathsep):
        if path:
            value = _file_secret(path)
            if len(value) >= MIN_LENGTH:
                out.setdefault(value, path)
    return out


def _forms(secret: str) -> Iterator[str]:
    """The secret, its pieces, and how it looks inside JSON or a Python repr."""
    yield secret
    for piece in re.split(r"[/:@?&=]", secret):
        if len(piece) >= _MIN_PIECE:
            yield piece
    yield json.dumps(secret)[1:-1]
    yield repr(secret)[1:-1]


_patterns: dict[frozenset[str], list[str]] = {}


def _needles() -> list[str]:
    secrets = frozenset(known())
    needles = _patterns.get(secrets)
    if needles is None:
        needles = sorted({f for s in secrets for f in _forms(s) if f}, key=len, reverse=True)
        _patterns.clear()
        _patterns[secrets] = needles
    return needles


def redact(text: str) -> str:
    """``text`` with every known secret (and its long pieces) replaced by ``***``, and every
    value of a well-known format whose digest is one this process was given in place of the
    secret itself (``$RUNNER_SECRET_DIGESTS``: the bot's token, in the sweeps it starts)."""
    for needle in _needles():
        if needle in text:
            text = text.replace(needle, MASK)
    digests = os.environ.get(ENV_DIGESTS)
    if digests:
        text = _redact_by_digest(text, set(digests.split(",")))
    return text


def digest(secret: str) -> str:
    import hashlib

    return hashlib.sha256(secret.encode()).hexdigest()


def _redact_by_digest(text: str, digests: set[str]) -> str:
    for _, pattern in TOKEN_FORMATS:
        text = pattern.sub(lambda m: MASK if digest(m.group(0)) in digests else m.group(0),
                           text)
    return text


def redact_obj(obj: Any) -> Any:
    """A copy of a JSON-like object with every string redacted (keys too)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [redact_obj(v) for v in obj]
    return obj


def find_secret(*objs: Any) -> tuple[str, str] | None:
    """The first (key, source) where one of the JSON-like ``objs`` holds a known secret."""
    forms = [(form, source) for secret, source in known().items() for form in _forms(secret)]
    if not forms:
        return None

    def walk(node: Any, where: str) -> tuple[str, str] | None:
        if isinstance(node, dict):
            items: Iterable[tuple[str, Any]] = ((f"{where}.{k}" if where else str(k), v)
                                                for k, v in node.items())
        elif isinstance(node, list | tuple):
            items = ((f"{where}[{i}]", v) for i, v in enumerate(node))
        elif isinstance(node, str):
            return next(((where, source) for form, source in forms if form in node), None)
        else:
            return None
        for key, value in items:
            hit = walk(value, key)
            if hit:
                return hit
        return None

    return next((hit for obj in objs if (hit := walk(obj, ""))), None)


# Values of well-known secret formats: recognised wherever they come from, even a secret this
# process was never told (a launched sweep does not get the bot's token, yet a file holding it
# must not land in its provenance)
TOKEN_FORMATS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern)) for name, pattern in (
        ("a Discord bot token", r"\b[MNO][A-Za-z\d_-]{23,27}\.[\w-]{6}\.[\w-]{27,40}\b"),
        ("a Discord webhook URL",
         r"https://(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/\d+/[\w-]+"),
        ("a WandB API key", r"(?i)(?:wandb|api[_-]?key)\W{0,40}\b[0-9a-f]{40}\b"),
        ("a WandB API key", r"\b(?:local|wandb_v1)-[0-9a-zA-Z_-]{40,}\b"),
        ("an AWS access key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
        ("an AWS secret key", r"(?i)aws_secret_access_key\W{0,10}[A-Za-z0-9/+]{40}"),
        ("a Hugging Face token", r"\bhf_[A-Za-z0-9]{30,}\b"),
        ("a GitHub token", r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
        ("an OpenAI-style key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{32,}\b"),
        ("a Slack token", r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
        ("a Google API key", r"\bAIza[0-9A-Za-z_-]{35}\b"),
        ("a private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    ))
# file names that hold credentials by custom (any component of the path)
CREDENTIAL_NAMES = (".env", ".env.*", "*.env", "*secret*", "*credential*", "*token*", "*.pem",
                    "*.key", "*.p12", "*.pfx", "id_*", ".netrc", "_netrc", ".pypirc", ".npmrc",
                    "*passw*", "*api_key*", "*apikey*", ".git-credentials", "*.keystore",
                    "*.jks", ".htpasswd", "*.ovpn", "kubeconfig", ".dockercfg")


def credential_name(path: str) -> bool:
    """Whether a file's name (or a folder it is in) says it holds credentials."""
    import fnmatch

    parts = [p.lower() for p in re.split(r"[/\\]", path) if p]
    return any(fnmatch.fnmatchcase(part, pattern) for part in parts
               for pattern in CREDENTIAL_NAMES)


def secret_in(text: str) -> str | None:
    """What kind of secret ``text`` holds (a known one, or a value of a well-known format),
    or None."""
    hit = find_secret(text)
    if hit is not None:
        return f"the secret {hit[1]}"
    for name, pattern in TOKEN_FORMATS:
        if pattern.search(text):
            return name
    return None


def redact_formats(text: str) -> str:
    """``text`` with known secrets and every value of a well-known secret format masked."""
    text = redact(text)
    for _, pattern in TOKEN_FORMATS:
        text = pattern.sub(MASK, text)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's message (and its arguments) in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        if record.exc_info:
            import traceback

            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
            record.exc_info = None
        return True


class RedactingStream:
    """A text stream that redacts what is written to it (runner's consoles write through one)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # isatty, fileno, flush, encoding, ...
        return getattr(self._inner, name)


def console(stderr: bool = False, **kwargs: Any) -> Any:
    """A rich Console on stdout or stderr whose output is redacted."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(file=RedactingStream(stream), **kwargs)  # type: ignore[arg-type]


def table_console() -> Any:
    """A redacted console for tables on stdout: the terminal's width, or 160 columns into files
    and pipes."""
    out = console(highlight=False)
    return out if out.is_terminal else console(highlight=False, width=160)


def install_hooks() -> None:
    """Tracebacks this process prints for an uncaught exception (main thread or any other) are
    redacted too: the exception's message may quote a secret."""
    import sys
    import threading
    import traceback

    def print_redacted(exc_type: Any, exc: Any, tb: Any, where: str = "") -> None:
        text = "".join(traceback.format_exception(exc_type, exc, tb))
        sys.stderr.write(redact(f"{where}{text}"))

    sys.excepthook = print_redacted

    def thread_hook(args: Any) -> None:
        if args.exc_type is SystemExit:
            return
        name = getattr(args.thread, "name", "?")
        print_redacted(args.exc_type, args.exc_value, args.exc_traceback,
                       f"Exception in thread {name}:\n")

    threading.excepthook = thread_hook
