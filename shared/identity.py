"""Who a person is: one normal form for every identity, and the directory of known users.

Every channel (the review API's tokens and OIDC, Slack, email links, the CLI) names people; the
same person must be the same string everywhere, and a name that only *looks* like a known user's
must never pass for it.

- `normalise(name)`: NFKC, case-folded, NFKC again (case folding can denormalise), stripped.
- Identities are ASCII after normalising: `[a-z0-9][a-z0-9._@-]*`, at most 128 characters. This
  is the homoglyph rule. Unicode's confusable data (TR39) is not available offline and the
  libraries that ship it are barely maintained; restricting identities to one script and a
  small alphabet refuses every cross-script look-alike (Cyrillic 'а' for Latin 'a', fullwidth
  letters are folded by NFKC first, invisible characters, combining marks) without any table.
  What is left are look-alikes *within* ASCII ('rn' for 'm', '0' for 'o', '1' for 'l'): a
  directory refuses to hold two users whose `skeleton`s collide, so no known user can be taken
  for another, and any other name is refused as unknown.
- `Directory`: the known users (workflow approvers, escalation and break-glass people, group
  members from groups.yaml, plus a configured list); `resolve(name)` returns the known user a
  name normalises to, or raises `IdentityError` (unknown, malformed, look-alike).

Pure but for `Directory.from_workflows`, which reads the workflow folder's YAML (importing the
YAML parser only then: the pure review rules import this module).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path

MAX_LENGTH = 128
_FORM = re.compile(r"[a-z0-9][a-z0-9._@-]*")
# Look-alikes within the allowed alphabet (from TR39's confusables, restricted to it): two known
# users whose names map to the same skeleton could be taken for each other.
_ASCII_CONFUSABLES = (("rn", "m"), ("vv", "w"), ("cl", "d"), ("0", "o"), ("1", "l"), ("5", "s"))
GROUPS_FILE = "groups.yaml"
_PEOPLE_FIELDS = ("approvers", "escalate_to", "break_glass")


class IdentityError(ValueError):
    """Why a name is not a known user's identity; the message names the name and the fix."""


def normalise(name: str) -> str:
    """The normal form of an identity: NFKC, case-folded, stripped ('Ａlice ' -> 'alice')."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", str(name)).casefold()).strip()


def well_formed(name: str) -> str:
    """`name` normalised, or IdentityError when it is not an allowed identity (see the module)."""
    normal = normalise(name)
    if not normal:
        raise IdentityError("the identity is empty")
    if len(normal) > MAX_LENGTH:
        raise IdentityError(f"the identity is longer than {MAX_LENGTH} characters")
    if not _FORM.fullmatch(normal):
        raise IdentityError(f"identity {normal!r} is not allowed: {_why(normal)}; identities are ASCII "
                            "letters, digits and . _ @ - (starting with a letter or digit), so that a "
                            "look-alike of a known user cannot pass for them")
    return normal


def skeleton(name: str) -> str:
    """What a well-formed identity looks like: its in-ASCII confusables folded to one form."""
    while True:  # to a fixed point: 'c1' folds to 'cl', which folds on to 'd'
        folded = name
        for look_alike, canonical in _ASCII_CONFUSABLES:
            folded = folded.replace(look_alike, canonical)
        if folded == name:
            return name
        name = folded


class Directory:
    """The known users, normalised; two that look alike are refused when the directory is built."""

    def __init__(self, users: Iterable[str]) -> None:
        known: dict[str, str] = {}  # skeleton -> user
        problems = []
        for raw in users:
            try:
                user = well_formed(raw)
            except IdentityError as exc:
                problems.append(f"known user {raw!r}: {exc}")
                continue
            other = known.setdefault(skeleton(user), user)
            if other != user:
                problems.append(f"known users {other!r} and {user!r} look alike; rename one of them")
        if problems:
            raise IdentityError("; ".join(problems))
        self._by_skeleton = known
        self.users = frozenset(known.values())

    @classmethod
    def from_workflows(cls, folder: Path, extra: Iterable[str] = ()) -> Directory:
        """Everyone a workflow in `folder` names (approvers, escalate_to, break_glass, members of
        its groups.yaml), plus `extra` (people who use Signoff without being named there)."""
        return cls([*people_in_workflows(folder), *extra])

    def resolve(self, name: str) -> str:
        """The known user `name` is; IdentityError when it is malformed, a look-alike or unknown."""
        user = well_formed(name)
        if user in self.users:
            return user
        twin = self._by_skeleton.get(skeleton(user))
        if twin is not None:
            raise IdentityError(f"identity {user!r} looks like the known user {twin!r} but is not them")
        raise IdentityError(f"{user!r} is not a known user; add them to the workflows' groups.yaml "
                            "or to the configured known users")

    def knows(self, name: str) -> bool:
        try:
            self.resolve(name)
        except IdentityError:
            return False
        return True

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.knows(name)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.users))

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        return f"Directory({sorted(self.users)!r})"


def people_in_workflows(folder: Path) -> list[str]:
    """The people the workflow files in `folder` and its groups.yaml name (not the group names).
    Files that are not valid YAML mappings are skipped: the workflow loader reports them."""
    import yaml  # here, not at the top: the pure rules that import this module read no files

    people: list[str] = []
    if not folder.is_dir():
        return people
    for path in sorted(folder.glob("*.y*ml")):
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue
        if not isinstance(data, dict):
            continue
        if path.name == GROUPS_FILE:
            people += [m for members in data.values() if isinstance(members, list)
                       for m in members if isinstance(m, str)]
            continue
        for step in data.get("steps") or []:
            inputs = step.get("inputs") if isinstance(step, dict) else None
            if not isinstance(inputs, dict):
                continue
            for field in _PEOPLE_FIELDS:
                entries = inputs.get(field)
                if isinstance(entries, list):
                    people += [e for e in entries if isinstance(e, str) and not e.startswith("group:")]
    return people


def _why(normal: str) -> str:
    for i, char in enumerate(normal):
        if not (char.isascii() and (char.isalnum() or char in "._@-")):
            name = unicodedata.name(char, "unnamed character")
            return f"it holds U+{ord(char):04X} {name} at position {i}"
    return "it must start with a letter or a digit"
