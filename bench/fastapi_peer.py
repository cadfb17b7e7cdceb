"""The FastAPI peer of bench/auth_throughput.py: API keys the way most FastAPI users would check them.

``fastapi.security.HTTPBearer`` as a dependency reads ``Authorization: Bearer``; the dependency hashes
the token with SHA-256 and looks the digest up in a dict of the known keys' digests, read from the
database once at start; an unknown key is a 401. The route answers the JSON of Thotbot's /v1/version.
No rate limit, no usage, no log, no revocation seen after start: the floor a hand-written check gives.
"""

# No `from __future__ import annotations`: FastAPI reads the dependencies from the annotations.

import hashlib
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select

from thotbot import __version__
from thotbot.storage.db import make_engine
from thotbot.storage.models import APIKey

__all__ = ["BODY", "PATH", "create_app", "known_digests"]

PATH = "/v1/version"
BODY = {"version": __version__, "api": "v1"}


def known_digests(database_url: str) -> dict[bytes, str]:
    """SHA-256 of each key not revoked -> its account id."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                select(APIKey.key_hash, APIKey.account_id).where(APIKey.revoked_at.is_(None))
            )
            return {bytes(digest): account_id for digest, account_id in rows}
    finally:
        engine.dispose()


def create_app(known: dict[bytes, str]) -> FastAPI:
    bearer = HTTPBearer()
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    async def account(credentials: Annotated[HTTPAuthorizationCredentials, Depends(bearer)]) -> str:
        found = known.get(hashlib.sha256(credentials.credentials.encode()).digest())
        if found is None:
            raise HTTPException(401, "Invalid API key", headers={"WWW-Authenticate": "Bearer"})
        return found

    @app.get(PATH)
    async def version(account_id: Annotated[str, Depends(account)]) -> dict[str, str]:
        return BODY

    return app
