"""People for the review API's tests: known users, and each one's own credential.

`people = People(tmp_path)`; build the review-notifier with `**people.settings`; then
`people.auth("bob")` is the Authorization header of bob's API token (created once, like
`signoff token create bob`), `people.auth("erin", "break-glass")` erin's break-glass token's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from services.review_notifier.api_tokens import TokenFile, issue
from shared.events import utcnow

KNOWN = ("alice", "bob", "carol", "dave", "erin", "oncall")


class People:
    def __init__(self, folder: Path, known: tuple[str, ...] = KNOWN) -> None:
        self.file = TokenFile(folder / "tokens" / "tokens.json")
        self.settings = {"tokens_file": self.file.path, "known_users": known}
        self._tokens: dict[tuple[str, str], str] = {}

    def token(self, user: str, role: str = "approver", ttl: timedelta = timedelta(days=1)) -> str:
        if (user, role) not in self._tokens:
            token, record = issue(user, role, ttl, utcnow())
            self.file.add(record)
            self._tokens[user, role] = token
        return self._tokens[user, role]

    def auth(self, user: str, role: str = "approver") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user, role)}"}
