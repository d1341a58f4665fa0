"""Who is calling the review API: a credential in, a `Person` (a known user and their roles) out.

    Authorization: Bearer so_<id>_<secret>     a per-person API token (api_tokens.py)
    Authorization: Bearer <JWT>                an OIDC token from the team's provider (oidc.py)

The name is never taken from the request: it is the token's user, or the OIDC identity claim,
normalised and resolved against the directory of known users (shared/identity.py), so a
look-alike or an unknown name is refused even with a valid signature.

Roles: an `approver` credential votes and reads; a `break-glass` credential (an API token created
with `--role break-glass`, or an OIDC token whose roles claim holds the configured break-glass
role) breaks glass and reads. A person's normal credential cannot break glass, and their
break-glass API token does not cast normal votes: each use of it is deliberate and visible (an OIDC
token carrying the break-glass role may do both; the request's `break_glass` flag says which).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from services.review_notifier.api_tokens import TokenError, TokenFile, looks_like_token
from services.review_notifier.oidc import JwksCache, OidcError, OidcVerifier
from shared.events import utcnow
from shared.identity import Directory, IdentityError

if TYPE_CHECKING:
    from services.review_notifier.settings import ReviewNotifierSettings

APPROVER, BREAK_GLASS, OPERATOR = "approver", "break-glass", "operator"


@dataclass(frozen=True)
class Person:
    name: str  # a known user, normalised
    roles: frozenset[str]
    credential: str  # what proved it, for the log: "token <id>" or "oidc"; never a secret


class Refusal(Exception):
    """401 (no valid credential) or 403 (valid, but not a known user or not allowed)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Authenticator:
    def __init__(self, people: Directory, tokens: TokenFile | None = None, oidc: OidcVerifier | None = None,
                 break_glass_role: str = "signoff-break-glass", clock: Callable[[], datetime] = utcnow) -> None:
        self.people, self.tokens, self.oidc = people, tokens, oidc
        self.break_glass_role, self.clock = break_glass_role, clock

    @classmethod
    def from_settings(cls, settings: ReviewNotifierSettings) -> Authenticator:
        """The directory (workflows and known users), the token file, OIDC when configured."""
        people = Directory.from_workflows(settings.workflows, settings.known_users)
        oidc = None
        if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:  # settings check all three
            oidc = OidcVerifier(
                issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                jwks=JwksCache(settings.oidc_jwks_url, settings.oidc_jwks_cache_seconds,
                               settings.oidc_jwks_min_refresh_seconds),
                identity_claim=settings.oidc_identity_claim, roles_claim=settings.oidc_roles_claim,
                algorithms=settings.oidc_algorithms)
        tokens = TokenFile(settings.tokens_file) if settings.tokens_file else None
        return cls(people, tokens, oidc, break_glass_role=settings.oidc_break_glass_role)

    def person(self, authorization: str | None) -> Person:
        """The person the `Authorization` header's credential proves; Refusal otherwise."""
        scheme, _, credential = (authorization or "").strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Refusal(401, "send your credential as `Authorization: Bearer <API token or OIDC token>`")
        if len(credential) > 16_384:
            raise Refusal(401, "the bearer token is longer than 16 KiB")
        if looks_like_token(credential):
            name, roles, via = self._api_token(credential)
        else:
            name, roles, via = self._oidc(credential)
        try:
            return Person(self.people.resolve(name), roles, via)
        except IdentityError as exc:
            raise Refusal(403, f"the credential names no known user: {exc}") from None

    def _api_token(self, credential: str) -> tuple[str, frozenset[str], str]:
        if self.tokens is None:
            raise Refusal(401, "API tokens are not enabled here (no token file is configured)")
        try:
            record = self.tokens.verify(credential, self.clock())
        except TokenError as exc:
            raise Refusal(exc.status, exc.message) from None
        return record.user, frozenset({record.role}), f"token {record.id}"

    def _oidc(self, credential: str) -> tuple[str, frozenset[str], str]:
        if self.oidc is None:
            raise Refusal(401, "not an API token (so_...), and OIDC is not configured here")
        try:
            claims = self.oidc.verify(credential)
        except OidcError as exc:
            raise Refusal(exc.status, exc.message) from None
        roles = {APPROVER} | ({BREAK_GLASS} if self.break_glass_role in claims.roles else set())
        return claims.identity, frozenset(roles), "oidc"


def may(person: Person, role: str) -> None:
    """Refusal (403) unless `person`'s credential carries `role`."""
    if role in person.roles:
        return
    if role == BREAK_GLASS:
        raise Refusal(403, f"breaking glass needs {person.name}'s break-glass credential (an API token created "
                           "with --role break-glass, or an OIDC token with the break-glass role); this one "
                           "is a normal approver credential")
    if OPERATOR in person.roles:
        raise Refusal(403, f"this is {person.name}'s operator credential (dead-letter re-drive in the console): "
                           "it casts no vote; vote with your approver credential")
    raise Refusal(403, f"this is {person.name}'s break-glass credential: it only breaks glass; "
                       "vote with your normal credential")
