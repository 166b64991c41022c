"""Text runner posts to Discord can never ping anyone.

Two locks, both always on: every message runner sends says that it mentions nobody
(``allowed_mentions`` with nothing to parse: Discord then pings no one whatever the text holds),
and text from chat, WandB or a run (names, values, tags, errors that echo input) is shown with
its mentions broken by a zero-width space, so ``@everyone`` or ``<@&role>`` is printed, not
rendered as a mention.
"""

from __future__ import annotations

import re
from typing import Any

NO_MENTIONS: dict[str, Any] = {"parse": [], "replied_user": False}  # a webhook payload's field
_MENTION = re.compile(r"@(everyone|here)|<(@[!&]?|#|/)(?=[\w:]+>)")
_ZWSP = "\u200b"


def no_pings(text: str) -> str:
    """``text`` with every ``@everyone``, ``@here`` and ``<@id>``/``<@&id>``/``<@!id>`` made
    plain text (a zero-width space after the ``@``)."""
    return _MENTION.sub(lambda m: (f"@{_ZWSP}{m.group(1)}" if m.group(1)
                                   else f"<{m.group(2)[0]}{_ZWSP}{m.group(2)[1:]}"), text)
