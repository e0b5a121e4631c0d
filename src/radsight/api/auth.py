"""Users, passwords and tokens.

Passwords are hashed with scrypt (stdlib). Verifying scrypt costs tens of milliseconds,
too much for every DICOMweb request a viewer makes, so a successful Basic check is
remembered for a short time keyed by a salted digest of the credentials. A remembered check
is trusted without the database for ``recheck_seconds`` (1 s); after that the user's row is
read again (one primary-key lookup, no scrypt) and the entry dropped if the user is gone or
the password hash changed. So a password change or a removed user, by this process or any
other (``radsight`` commands, another server on the same index), takes effect within a second;
within that second a STOW-RS or WADO-RS client's request needs neither the database nor a
worker thread for its credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from radsight.index.models import ApiToken, User
from radsight.index.types import utcnow

ROLES = ("admin", "radiologist", "technologist", "viewer")
_N, _R, _P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), n=_N, r=_R, p=_P, dklen=32)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VerifiedUser:
    """A Basic check that succeeded: the user's row as it was then, and until when it is trusted.
    Authorization reads its ``id``, ``username`` and ``role`` as it reads a :class:`User`'s."""

    id: int
    username: str
    role: str
    password_hash: str
    created_at: datetime
    expires: float  # monotonic: scrypt verification is redone after this
    recheck: float  # monotonic: the row is read again after this

    def user(self) -> User:
        """A fresh, detached User (each request gets its own object)."""
        return User(id=self.id, username=self.username, role=self.role, password_hash=self.password_hash,
                    created_at=self.created_at)


class Authenticator:
    """Checks Basic credentials and Bearer tokens against the index's users."""

    def __init__(self, cache_seconds: float = 60.0, recheck_seconds: float = 1.0) -> None:
        self._cache: dict[str, VerifiedUser] = {}
        self._lock = threading.Lock()
        self._pepper = os.urandom(16)
        self._ttl = cache_seconds
        self._recheck = recheck_seconds

    def _cache_key(self, username: str, password: str) -> str:
        # Keyed BLAKE2 (a MAC by design, RFC 7693): no password is kept in memory, and it is one
        # C call, cheaper than HMAC on every DICOMweb request (docs/benchmarks.md).
        return hashlib.blake2b(f"{username}\0{password}".encode(), key=self._pepper, digest_size=32).hexdigest()

    def recent_basic(self, username: str, password: str) -> User | None:
        """The user, without any database access, if these credentials were verified (and the user's row
        read) less than ``recheck_seconds`` ago; None means: call :meth:`check_basic`."""
        hit = self.recent(username, password)
        return None if hit is None else hit.user()

    def recently_verified(self, username: str, password: str) -> bool:
        """:meth:`recent` is not None."""
        return self.recent(username, password) is not None

    def recent(self, username: str, password: str) -> VerifiedUser | None:
        """:meth:`recent_basic` without building the User (an SQLAlchemy object costs more than the
        lookup): what authorization needs of the user, or None."""
        with self._lock:
            hit = self._cache.get(self._cache_key(username, password))
        if hit is None or hit.recheck <= time.monotonic():
            return None
        return hit

    def check_basic(self, session: Session, username: str, password: str) -> User | None:
        key = self._cache_key(username, password)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit.expires > now:
            user = session.get(User, hit.id)
            if user is not None and user.password_hash == hit.password_hash and user.username == username:
                self._remember(key, user, hit.expires, now)
                return user
            with self._lock:  # removed, renamed or a new password: verify from scratch
                self._cache.pop(key, None)
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not verify_password(password, user.password_hash):
            return None
        self._remember(key, user, now + self._ttl, now)
        return user

    def _remember(self, key: str, user: User, expires: float, now: float) -> None:
        entry = VerifiedUser(user.id, user.username, user.role, user.password_hash, user.created_at, expires,
                          min(expires, now + self._recheck))
        with self._lock:
            if len(self._cache) > 10000 and key not in self._cache:
                self._cache.clear()
            self._cache[key] = entry

    def check_token(self, session: Session, token: str) -> User | None:
        row = session.scalar(select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
        if row is None:
            return None
        if row.expires_at < utcnow():
            return None
        return session.get(User, row.user_pk)


def issue_token(session: Session, user: User, ttl_hours: int) -> str:
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.execute(delete(ApiToken).where(ApiToken.expires_at < now))
    session.add(ApiToken(token_hash=_token_hash(token), user_pk=user.id, created_at=now,
                         expires_at=now + timedelta(hours=ttl_hours)))
    session.commit()
    return token


def revoke_token(session: Session, token: str) -> None:
    session.execute(delete(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
    session.commit()


def add_user(session: Session, username: str, password: str, role: str) -> User:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if not username or len(username) > 64:
        raise ValueError("user name must be 1 to 64 characters")
    if len(password) < 8:
        raise ValueError("password must have at least 8 characters")
    existing = session.scalar(select(User).where(User.username == username))
    if existing is not None:
        raise ValueError(f"user {username!r} already exists")
    user = User(username=username, password_hash=hash_password(password), role=role,
                created_at=utcnow())
    session.add(user)
    session.commit()
    return user
