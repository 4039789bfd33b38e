"""Passwords (bcrypt), JWTs, and the current user of a request."""

import re
from datetime import UTC, datetime, timedelta

import bcrypt
import jwt
from fastapi import APIRouter, Depends, Form, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from .config import settings
from .db import get_db
from .models import User

bearer = HTTPBearer(auto_error=False)


def hash_password(password: str) -> str:
    """bcrypt at the configured cost: about 0.25 s of one core at cost 12."""
    salt = bcrypt.gensalt(rounds=settings.bcrypt_rounds)
    return bcrypt.hashpw(password.encode(), salt).decode()


def verify_password(password: str, password_hash: str) -> bool:
    return bcrypt.checkpw(password.encode(), password_hash.encode())


def _token(user_id: int, kind: str, lifetime: timedelta) -> str:
    now = datetime.now(UTC)
    claims = {"sub": str(user_id), "type": kind, "iat": now, "exp": now + lifetime}
    return jwt.encode(claims, settings.jwt_secret, algorithm="HS256")


def tokens_for(user: User) -> dict[str, object]:
    access = timedelta(minutes=settings.access_token_minutes)
    return {
        "access_token": _token(user.id, "access", access),
        "refresh_token": _token(user.id, "refresh", timedelta(days=settings.refresh_token_days)),
        "token_type": "bearer",
        "expires_in": int(access.total_seconds()),
    }


def user_id_from(token: str, kind: str) -> int:
    """The user a token names, or 401."""
    try:
        claims = jwt.decode(token, settings.jwt_secret, algorithms=["HS256"])
    except jwt.PyJWTError as error:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials") from error
    if claims.get("type") != kind:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials")
    try:
        return int(claims["sub"])
    except (KeyError, ValueError) as error:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials") from error


async def current_user(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    db: AsyncSession = Depends(get_db),
) -> User:
    if credentials is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Not authenticated")
    user = await db.get(User, user_id_from(credentials.credentials, "access"))
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials")
    if not user.is_active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Inactive user")
    return user


# The routes of /auth. Register and login hash on the threadpool: bcrypt holds a core for
# a quarter of a second, which on the event loop would stall every other request.

router = APIRouter(prefix="/auth", tags=["auth"])


class RegisterBody(BaseModel):
    username: str = Field(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_-]+$")
    email: EmailStr
    password: str


class RefreshBody(BaseModel):
    refresh_token: str


def user_json(user: User) -> dict[str, object]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "settings": user.settings or {},
        "created_at": user.created_at.isoformat() if user.created_at else None,
    }


def _weak(password: str) -> bool:
    return (
        len(password) < 8
        or not re.search(r"[A-Z]", password)
        or not re.search(r"[a-z]", password)
        or not re.search(r"[0-9]", password)
    )


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(body: RegisterBody, db: AsyncSession = Depends(get_db)) -> dict[str, object]:
    if _weak(body.password):
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            "Password must be at least 8 characters with an upper-case letter, a lower-case letter and a digit",
        )
    if (await db.execute(select(User.id).where(User.email == body.email))).first():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Email already registered")
    if (await db.execute(select(User.id).where(User.username == body.username))).first():
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "Username already taken")
    if settings.plant_bcrypt_on_loop:
        password_hash = hash_password(body.password)
    else:
        password_hash = await run_in_threadpool(hash_password, body.password)
    user = User(username=body.username, email=body.email, password_hash=password_hash, settings={})
    db.add(user)
    await db.commit()
    await db.refresh(user)
    return user_json(user)


@router.post("/login")
async def login(
    username: str = Form(...), password: str = Form(...), db: AsyncSession = Depends(get_db)
) -> dict[str, object]:
    found = await db.execute(select(User).where(or_(User.username == username, User.email == username)))
    user = found.scalars().first()
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password")
    if settings.plant_bcrypt_on_loop:
        valid = verify_password(password, user.password_hash)
    else:
        valid = await run_in_threadpool(verify_password, password, user.password_hash)
    if not valid:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password")
    if not user.is_active:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Inactive user")
    return tokens_for(user)


@router.post("/refresh")
async def refresh(body: RefreshBody, db: AsyncSession = Depends(get_db)) -> dict[str, object]:
    user = await db.get(User, user_id_from(body.refresh_token, "refresh"))
    if user is None or not user.is_active:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Could not validate credentials")
    return tokens_for(user)


@router.get("/me")
async def me(user: User = Depends(current_user)) -> dict[str, object]:
    return user_json(user)
