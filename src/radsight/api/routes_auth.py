"""Log in and out: the only HTTP routes besides /health that need no credentials."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from radsight.api.auth import issue_token, revoke_token
from radsight.api.deps import TOKEN_COOKIE, ArchiveDep, CurrentUser
from radsight.api.headers import CSP, page_policy
from radsight.api.schemas import TokenRequest, TokenResponse, UserOut
from radsight.api.security import LOGIN_FORM_COOKIE, Forbidden, check_form_token, check_origin, new_form_token

router = APIRouter()

_LOGIN_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>RadSight - log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{font-family:system-ui,sans-serif;background:#111;color:#eee;display:grid;place-items:center;height:100vh;margin:0}
form{background:#1d1d1d;padding:2rem;border-radius:8px;min-width:280px}label{display:block;margin:.6rem 0 .2rem}
input{width:100%;padding:.5rem;box-sizing:border-box}button{margin-top:1rem;width:100%;padding:.6rem}
.err{color:#f77}</style></head>
<body><form method="post" action="/login"><h1>RadSight</h1>{error}
<input type="hidden" name="next" value="{next}"><input type="hidden" name="form_token" value="{token}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password" required>
<button type="submit">Log in</button></form></body></html>"""


_LOGIN_POLICY = page_policy(_LOGIN_PAGE)  # its style element, by hash


def _safe_next(target: str) -> str:
    # Only local paths: never an open redirect to another site.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def _login_page(next: str, error: str = "", status_code: int = status.HTTP_200_OK) -> HTMLResponse:
    """The login page with a new form token, in the page and in its cookie."""
    token = new_form_token()
    page = (_LOGIN_PAGE.replace("{error}", f'<p class="err">{_html_escape(error)}</p>' if error else "")
            .replace("{next}", _html_escape(_safe_next(next))).replace("{token}", token))
    resp = HTMLResponse(page, status_code=status_code, headers={CSP: _LOGIN_POLICY})
    resp.set_cookie(LOGIN_FORM_COOKIE, token, httponly=True, samesite="strict", path="/login", max_age=3600)
    return resp


@router.get("/health", include_in_schema=False)
def health(archive: ArchiveDep) -> dict[str, str]:
    with archive.db.engine.connect():
        pass
    return {"status": "ok"}


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
def login_page(next: str = "/") -> HTMLResponse:
    return _login_page(next)


@router.post("/login", include_in_schema=False)
def login_form(
    request: Request,
    archive: ArchiveDep,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
    form_token: Annotated[str, Form()] = "",
) -> Response:
    try:
        check_origin(request, archive.settings, required=False)
        check_form_token(request, form_token)
    except Forbidden as exc:
        return _login_page(next, str(exc.detail).capitalize() + ".", status.HTTP_403_FORBIDDEN)
    with archive.db.session() as s:
        user = request.app.state.authenticator.check_basic(s, username, password)
        if user is None:
            return _login_page(next, "Wrong user name or password.", status.HTTP_401_UNAUTHORIZED)
        token = issue_token(s, user, archive.settings.token_ttl_hours)
    resp = RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    resp.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict",
                    max_age=archive.settings.token_ttl_hours * 3600)
    resp.delete_cookie(LOGIN_FORM_COOKIE, path="/login")
    return resp


@router.post("/api/auth/token", tags=["auth"], openapi_extra={"security": []})  # no credentials yet
def create_token(body: TokenRequest, request: Request, archive: ArchiveDep) -> TokenResponse:
    """Exchange a user name and password for a Bearer token."""
    with archive.db.session() as s:
        user = request.app.state.authenticator.check_basic(s, body.username, body.password)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "wrong user name or password")
        token = issue_token(s, user, archive.settings.token_ttl_hours)
    return TokenResponse(access_token=token, expires_in=archive.settings.token_ttl_hours * 3600)


@router.post("/logout", include_in_schema=False)
def logout(request: Request, archive: ArchiveDep) -> Response:
    token = request.cookies.get(TOKEN_COOKIE)
    if token:
        with archive.db.session() as s:
            revoke_token(s, token)
    resp = RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
    resp.delete_cookie(TOKEN_COOKIE)
    return resp


@router.get("/api/me", tags=["auth"])
def me(user: CurrentUser) -> UserOut:
    """The logged-in user."""
    return UserOut(username=user.username, role=user.role)
