"""Personal API tokens: how a user's scripts call the API when pages sign in through OIDC or a proxy.

A token is `lora_` + `secrets.token_urlsafe(32)` (256 random bits). Only its SHA-256 is stored, so a database
leak does not leak usable tokens; the token itself is shown once, at creation. Like `service.py`, every function
takes the caller's `user_id` and touches only that user's tokens; another user's token is `NotFound`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlmodel import Session, col, select

from lora_core.errors import FieldProblem, InvalidInput, NotFound
from lora_core.models import ApiToken, utcnow

TOKEN_PREFIX = "lora_"
# lora_ + 8 random characters: enough to tell a user's tokens apart, far too little to guess the rest.
DISPLAY_PREFIX_CHARS = len(TOKEN_PREFIX) + 8
MAX_NAME_CHARS = 100
MAX_ACTIVE_TOKENS_PER_USER = 50
# Writing last_used_at on every request would turn each read into a write; a minute's precision is plenty.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_TOKEN_SHAPE = re.compile(r"lora_[A-Za-z0-9_-]{43}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class CreatedToken:
    """The stored record and the token itself, which exists nowhere else: show it once."""

    record: ApiToken
    token: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_api_token(session: Session, user_id: str, name: str) -> CreatedToken:
    """Issue a new token named `name` (what it is for, e.g. "training laptop")."""
    name = (name or "").strip()
    if not name or len(name) > MAX_NAME_CHARS or _CONTROL.search(name):
        raise InvalidInput(
            "The token needs a name.",
            [FieldProblem("name", f"must be 1 to {MAX_NAME_CHARS} printable characters")],
        )
    active = session.exec(
        select(ApiToken.id).where(ApiToken.user_id == user_id, col(ApiToken.revoked_at).is_(None))
    ).all()
    if len(active) >= MAX_ACTIVE_TOKENS_PER_USER:
        raise InvalidInput(
            f"You already have {MAX_ACTIVE_TOKENS_PER_USER} active tokens; revoke one first.",
            [FieldProblem("name", "too many active tokens", "too_many_tokens")],
        )
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    record = ApiToken(
        user_id=user_id, name=name, token_hash=hash_token(token), token_prefix=token[:DISPLAY_PREFIX_CHARS]
    )
    session.add(record)
    session.commit()
    return CreatedToken(record=record, token=token)


def list_api_tokens(session: Session, user_id: str, *, include_revoked: bool = False) -> list[ApiToken]:
    """The user's tokens, newest first."""
    query = select(ApiToken).where(ApiToken.user_id == user_id)
    if not include_revoked:
        query = query.where(col(ApiToken.revoked_at).is_(None))
    return list(session.exec(query.order_by(col(ApiToken.created_at).desc(), col(ApiToken.id).desc())).all())


def revoke_api_token(session: Session, user_id: str, token_id: uuid.UUID | str) -> ApiToken:
    """Revoke at once: the next request with it is refused. Revoking twice is harmless."""
    try:
        parsed = token_id if isinstance(token_id, uuid.UUID) else uuid.UUID(str(token_id))
    except ValueError:
        raise NotFound("Token not found.") from None
    record = session.exec(select(ApiToken).where(ApiToken.id == parsed, ApiToken.user_id == user_id)).first()
    if record is None:
        raise NotFound("Token not found.")
    if record.revoked_at is None:
        record.revoked_at = utcnow()
        session.add(record)
        session.commit()
    return record


def authenticate_token(session: Session, token: str) -> str | None:
    """The user id a live token belongs to, or None for anything else (unknown, revoked, malformed).

    The lookup is by hash, so comparing is constant-time in the secret; shape is checked first so junk never
    reaches the database.
    """
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
        return None
    record = session.exec(
        select(ApiToken).where(ApiToken.token_hash == hash_token(token), col(ApiToken.revoked_at).is_(None))
    ).first()
    if record is None:
        return None
    now = utcnow()
    if record.last_used_at is None or now - record.last_used_at >= LAST_USED_RESOLUTION:
        record.last_used_at = now
        session.add(record)
        session.commit()
    return record.user_id
