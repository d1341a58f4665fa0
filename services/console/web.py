"""What every page shares: the signed-in session (or a redirect to sign-in), CSRF checks,
rendering with Jinja2 (autoescaped), and the sign-in and sign-out routes.

Each request re-checks the person's credential (the token file is re-read when it changed; an
OIDC token's signature and expiry are verified again), so a revoked or expired credential ends the
session at its next page, not at the session's end.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.console.sessions import SIGN_IN_FORM_LIFETIME, Session, Sessions, cookie_args, cookie_name, csrf_ok
from services.review_notifier.auth import Authenticator, Refusal
from shared.events import utcnow

log = structlog.get_logger()
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
MAX_CREDENTIAL = 16_384  # the review API's own bound on a bearer token


class NeedsSignIn(Exception):
    """No live session: the app's handler redirects to the sign-in page."""


class Forbidden(Exception):
    """A form without this session's CSRF token, or an action the person may not take (403 page)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class Web:
    """The app's shared parts, which the routes reach through `request.app.state.web`."""
    sessions: Sessions
    auth: Authenticator
    secure_cookies: bool

    def cookie(self, request: Request) -> str | None:
        return request.cookies.get(cookie_name(self.secure_cookies))


def web_of(request: Request) -> Web:
    return request.app.state.web


async def signed_in(request: Request) -> Session:
    """The request's signed-in session, its credential still valid; NeedsSignIn otherwise."""
    web = web_of(request)
    session = web.sessions.get(web.cookie(request), utcnow())
    if session is None or not session.signed_in:
        raise NeedsSignIn()
    try:
        await asyncio.to_thread(web.auth.person, f"Bearer {session.credential}")
    except Refusal as refusal:
        log.info("console_session_ended", person=session.person, via=session.via, why=refusal.message)
        web.sessions.end(session.id)
        raise NeedsSignIn() from None
    return session


def check_csrf(session: Session | None, token: str | None, what: str) -> None:
    if not csrf_ok(session, token):
        log.warning("console_csrf_refused", what=what, person=session.person if session else None)
        raise Forbidden("this form did not come from your session (missing or wrong CSRF token): reload the page "
                        "and submit again")


def render(request: Request, name: str, session: Session | None, status: int = 200, **context: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, {"session": session, **context}, status_code=status)


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


router = APIRouter()


@router.get("/signin", response_class=HTMLResponse)
async def signin_page(request: Request) -> Response:
    web = web_of(request)
    current = web.sessions.get(web.cookie(request), utcnow())
    if current is not None and current.signed_in:
        return see_other("/reviews")  # a signed-in session is not replaced by visiting this page
    return _sign_in_form(request, web)


def _sign_in_form(request: Request, web: Web, status: int = 200, error: str | None = None) -> Response:
    """The sign-in page with a new form cookie and its CSRF token (no session: see sessions.py)."""
    value, csrf = web.sessions.sign_in_form(utcnow())
    response = render(request, "signin.html", None, status=status, csrf=csrf, error=error)
    response.set_cookie(**cookie_args(value, web.secure_cookies,  # type: ignore[arg-type]
                                      max_age=int(SIGN_IN_FORM_LIFETIME.total_seconds())))
    return response


@router.post("/signin", response_class=HTMLResponse)
async def signin(request: Request, credential: str = Form(default="", max_length=MAX_CREDENTIAL),
                 csrf: str = Form(default="", max_length=128)) -> Response:
    web = web_of(request)
    if not web.sessions.sign_in_form_ok(web.cookie(request), csrf, utcnow()):
        log.warning("console_csrf_refused", what="sign-in", person=None)
        raise Forbidden("this sign-in form did not come from this browser, or is older than a quarter of an hour "
                        "(missing or wrong CSRF token): reload the page and sign in again")
    credential = credential.strip()
    try:
        person = await asyncio.to_thread(web.auth.person, f"Bearer {credential}")
    except Refusal as refusal:
        log.info("console_sign_in_refused", status=refusal.status, why=refusal.message)
        return _sign_in_form(request, web, refusal.status, refusal.message)
    session = web.sessions.sign_in(None, person.name, person.roles, credential, person.credential, utcnow())
    log.info("console_signed_in", person=person.name, via=person.credential, roles=sorted(person.roles))
    response = see_other("/reviews")
    response.set_cookie(**cookie_args(session.id, web.secure_cookies))  # type: ignore[arg-type]
    return response


@router.post("/signout")
async def signout(request: Request, csrf: str = Form(default="", max_length=128)) -> Response:
    web = web_of(request)
    session = web.sessions.get(web.cookie(request), utcnow())
    check_csrf(session, csrf, "sign-out")
    assert session is not None
    web.sessions.end(session.id)
    log.info("console_signed_out", person=session.person)
    response = see_other("/signin")
    response.delete_cookie(cookie_name(web.secure_cookies), path="/", secure=web.secure_cookies, httponly=True,
                           samesite="strict")
    return response
