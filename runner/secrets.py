"""Secrets (webhook URLs, tokens, keys): read from the environment or a file, never from a config.

A config names *where* a secret is (``webhook_url_env: DISCORD_WEBHOOK_URL`` or
``webhook_url_file: ~/.config/runner/webhook``), never the secret itself, so manifests and config
snapshots cannot contain it. Every secret read through here is registered, and ``redact()``
replaces it (and its path-like pieces, such as a webhook token) in any text about to be logged or
shown in an error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from runner.errors import ConfigError

_KNOWN: set[str] = set()
_MIN_PIECE = 12  # parts of a secret at least this long are redacted on their own too


def read_secret(what: str, env: str | None = None, file: str | None = None) -> str:
    """The secret from ``$env`` or from ``file``; a clear error naming where it was looked for."""
    value = None
    if env:
        value = os.environ.get(env)
    if not value and file:
        path = Path(file).expanduser()
        try:
            value = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read the secret file {path}: "
                              f"{exc.strerror}") from None
    if not value:
        where = " or ".join(x for x in (f"${env}" if env else "", file or "") if x)
        raise ConfigError(f"{what}: no secret found in {where or 'any configured place'}; "
                          "set the environment variable or point to a file (never put it in "
                          "a config)")
    register(value)
    return value


def register(secret: str) -> None:
    _KNOWN.add(secret)
    for piece in re.split(r"[/:@?&=]", secret):
        if len(piece) >= _MIN_PIECE:
            _KNOWN.add(piece)


def redact(text: str) -> str:
    for secret in sorted(_KNOWN, key=len, reverse=True):
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text
