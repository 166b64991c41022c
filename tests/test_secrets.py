"""Secrets come from the environment or a file and are redacted from any text shown."""

from __future__ import annotations

import pytest

from runner.config.secrets import read_secret, redact
from runner.errors import ConfigError


def test_secret_from_env_then_file_and_redacted_everywhere(tmp_path, monkeypatch):
    url = "https://discord.com/api/webhooks/123456789012345678/" + "S3cr3t-t0ken_" * 5
    monkeypatch.delenv("HOOK", raising=False)
    path = tmp_path / "hook"
    path.write_text(url + "\n")
    assert read_secret("webhook", env="HOOK", file=str(path)) == url
    monkeypatch.setenv("HOOK", url)
    assert read_secret("webhook", env="HOOK") == url
    text = f"POST {url}?wait=true failed; token {url.rsplit('/', 1)[1]}"
    assert redact(text) == "POST ***?wait=true failed; token ***"
    assert redact("only the token: " + url.rsplit("/", 1)[1]) == "only the token: ***"


def test_missing_or_unreadable_secret_names_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"webhook: no secret found in \$NOPE; set the"):
        read_secret("webhook", env="NOPE")
    with pytest.raises(ConfigError, match="cannot read the secret file .*/gone: No such file"):
        read_secret("webhook", env="NOPE", file=str(tmp_path / "gone"))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ConfigError, match=r"no secret found in \$NOPE or .*/empty"):
        read_secret("webhook", env="NOPE", file=str(tmp_path / "empty"))
