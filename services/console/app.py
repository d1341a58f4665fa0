"""The console's app, built from its settings (`create_app(settings)` opens nothing; its lifespan
opens the audit index, restores the projection from its snapshot (feed.py), reads the topics into
the index, and follows them; at shutdown it saves the snapshot):

    python -m services.console      serve it on CONSOLE_HTTP_HOST:CONSOLE_HTTP_PORT

Kafka as the `console` principal (shared/acl.py): it reads every record and dead-letter topic, and
writes a consumed topic only to re-drive a letter for an operator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.console.feed import Feed, start_feed, stop_feed
from services.console.pages import Parts
from services.console.pages import router as pages
from services.console.projection import Projection
from services.console.reviews_api import ReviewApi
from services.console.session_store import SessionStore, read_session_key, where_sessions_live
from services.console.sessions import Sessions
from services.console.settings import ConsoleSettings
from services.console.web import Forbidden, NeedsSignIn, Web, render, see_other
from services.console.web import router as signin
from services.review_notifier.api_tokens import TokenFile
from services.review_notifier.auth import Authenticator
from services.review_notifier.oidc import JwksCache, OidcVerifier
from shared.audit.index import Index
from shared.body_limit import BodyLimit
from shared.identity import Directory
from shared.logging import configure
from shared.replay import open_snapshots
from shared.signing import SUBMITTED, load_trust

# No script, no frames, nothing from elsewhere: the pages are plain HTML forms.
HEADERS = {"Content-Security-Policy": "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; "
                                      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
           "Cache-Control": "no-store"}
# The largest form is a vote's (a reason of at most 4000 characters) or a sign-in's (a token of at
# most 16 KiB): anything larger is refused before it is parsed (shared/body_limit.py).
MAX_BODY = 64 * 1024


def authenticator(settings: ConsoleSettings) -> Authenticator:
    """Who may sign in: the review API's people and credentials (the same token file, OIDC issuer)."""
    oidc = None
    if settings.oidc_issuer and settings.oidc_audience and settings.oidc_jwks_url:
        oidc = OidcVerifier(issuer=settings.oidc_issuer, audience=settings.oidc_audience,
                            jwks=JwksCache(settings.oidc_jwks_url), identity_claim=settings.oidc_identity_claim)
    return Authenticator(Directory.from_workflows(settings.workflows, settings.known_users),
                         TokenFile(settings.tokens_file) if settings.tokens_file else None, oidc)


def sessions(settings: ConsoleSettings) -> Sessions:
    """Where sessions live (session_store.py) and the key every replica shares; opens nothing yet."""
    url = settings.database_url.get_secret_value() if settings.database_url else None
    key = read_session_key(settings.session_key_file) if settings.session_key_file else None
    return Sessions(timedelta(minutes=settings.session_minutes), settings.max_sessions,
                    SessionStore(where_sessions_live(url, settings.sessions_db)), key)


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    log = configure(settings.log_level)
    if settings.trusted_keys is None:
        raise ValueError("the console believes only signed events: set SIGNOFF_TRUSTED_KEYS to the trust file")

    @asynccontextmanager
    async def lifespan(api: FastAPI) -> AsyncIterator[None]:
        assert settings.trusted_keys is not None
        keyring = load_trust(settings.trusted_keys,
                             accept_unsigned=(SUBMITTED,) if settings.accept_unsigned_submissions else ())
        index = Index.open(settings.index_db)
        http = httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        feed = Feed(settings.kafka, keyring, index, Projection())
        feed.restore(open_snapshots(settings.index_db))  # kept in the index's file: it goes with the index
        api.state.parts = Parts(feed.projection, feed, ReviewApi(settings.review_url, http),
                                settings.kafka, keyring, settings.dead_letters_limit,
                                timedelta(days=settings.dead_letters_days))
        task = await start_feed(feed, settings.refresh_seconds)
        log.info("console_listening", host=settings.http_host, port=settings.http_port, url=settings.public_url)
        try:
            yield
        finally:
            await stop_feed(task)
            feed.save()
            if feed.store is not None:
                feed.store.close()
            await http.aclose()
            index.close()
            api.state.web.sessions.close()

    api = FastAPI(title="Signoff console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    api.state.web = Web(sessions(settings), authenticator(settings), settings.secure_cookies)
    api.include_router(signin)
    api.include_router(pages)
    api.add_middleware(BodyLimit, limit=MAX_BODY)  # added first: inside the headers below, so a 413 has them

    @api.middleware("http")
    async def headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        response = await call_next(request)
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @api.exception_handler(NeedsSignIn)
    async def needs_sign_in(request: Request, exc: NeedsSignIn) -> Response:
        return see_other("/signin")

    @api.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> HTMLResponse:
        return render(request, "error.html", None, status=403, message=exc.message)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        """Ready when the last catch-up of the index reached the topics' ends."""
        parts: Parts | None = getattr(request.app.state, "parts", None)
        if parts is None or parts.feed.error is not None or parts.feed.caught_up_at is None:
            why = parts.feed.error if parts is not None and parts.feed.error else "not caught up with the topics"
            return JSONResponse({"status": "unavailable", "why": why}, status_code=503)
        return JSONResponse({"status": "ok", "caught_up_at": parts.feed.caught_up_at.isoformat()})

    return api
