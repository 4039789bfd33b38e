"""The rate limit: RATE_LIMIT_PER_MINUTE requests per client IP per minute, per API process,
in a sliding window (as slowapi's in-memory storage does)."""

import time
from collections import defaultdict, deque

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

WINDOW_SECONDS = 60.0


class RateLimit:
    def __init__(self, app: ASGIApp, per_minute: int) -> None:
        self.app = app
        self.per_minute = per_minute
        self.seen: defaultdict[str, deque[float]] = defaultdict(deque)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.per_minute <= 0:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        ip = client[0] if client else "unknown"
        now = time.monotonic()
        seen = self.seen[ip]
        while seen and now - seen[0] > WINDOW_SECONDS:
            seen.popleft()
        if len(seen) >= self.per_minute:
            response = JSONResponse({"detail": "Too many requests. Please try again later."}, status_code=429)
            await response(scope, receive, send)
            return
        seen.append(now)
        await self.app(scope, receive, send)
