"""Periodic reports: which channel gets which read-only commands, how often.

Kept in one JSON file written atomically, so subscriptions survive a restart of the bot; the
clock is injected, so tests run them on a fake one.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from runner.storage.atomic import write_json_atomic


@dataclass
class Subscription:
    id: str
    channel_id: int
    every_min: float
    what: str  # read-only commands, ';'-separated, e.g. "sweeps; runs sweep:mnist top:5"
    created_by: int
    next_due: float
    created_roles: list[int] = field(default_factory=list)  # the creator's roles back then
    paused: str = ""  # why it stopped (its creator lost the right to subscribe here)


class SubscriptionStore:
    def __init__(self, path: Path | str, clock: Callable[[], float],
                 private: bool = True) -> None:
        self.path = Path(path)
        self.clock = clock
        self.private = private  # 0600: who subscribed to what is the bot's business
        self._lock = threading.Lock()
        self.items: list[Subscription] = self._load()

    def _load(self) -> list[Subscription]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return []
        except ValueError as exc:
            raise ValueError(f"{self.path} is not valid JSON ({exc}); fix or delete it") from None
        return [Subscription(**item) for item in data.get("subscriptions", [])]

    def _save(self) -> None:
        self.path.parent.mkdir(mode=0o700 if self.private else 0o777, parents=True,
                               exist_ok=True)
        write_json_atomic(self.path, {"subscriptions": [asdict(s) for s in self.items]},
                          private=self.private)

    def add(self, channel_id: int, every_min: float, what: str, user_id: int,
            roles: tuple[int, ...] = ()) -> Subscription:
        with self._lock:
            sub = Subscription(uuid.uuid4().hex[:6], channel_id, every_min, what, user_id,
                               self.clock() + every_min * 60, list(roles))
            self.items.append(sub)
            self._save()
            return sub

    def remove(self, channel_id: int, sub_id: str | None) -> list[Subscription]:
        """Remove one subscription of a channel (by id), or all of them."""
        with self._lock:
            gone = [s for s in self.items if s.channel_id == channel_id
                    and (not sub_id or s.id == sub_id)]
            self.items = [s for s in self.items if s not in gone]
            self._save()
            return gone

    def take_due(self) -> list[Subscription]:
        """Subscriptions due now; each is moved to its next slot (a missed slot is not
        replayed: after a long pause a subscription fires once, not once per missed slot)."""
        now = self.clock()
        with self._lock:
            due = [s for s in self.items if s.next_due <= now]
            for s in due:
                while s.next_due <= now:
                    s.next_due += s.every_min * 60
            if due:
                self._save()
            return due

    def of_channel(self, channel_id: int) -> list[Subscription]:
        return [s for s in self.items if s.channel_id == channel_id]

    def set_paused(self, sub: Subscription, why: str) -> None:
        with self._lock:
            sub.paused = why
            self._save()
