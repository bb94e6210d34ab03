"""Domain exceptions carry their status; one set of handlers renders every error as JSON."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Mount, Route

from zyron.middleware import loggable_path
from zyron.ops import metrics

log = logging.getLogger("zyron.errors")


class ErrorBody(BaseModel):
    """The body of every error response."""

    error: str
    detail: str


class ZyronError(Exception):
    """Base of every error the API answers with; subclasses fix the status and code."""

    status_code: int = 400
    code: str = "bad_request"
    default_detail: str = "The request cannot be served."
    # The limit, quota or budget that refused the request, if one did (counted in /metrics).
    limit: str | None = None

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        limit: str | None = None,
    ):
        self.detail = detail or self.default_detail
        self.headers = headers or {}
        self.limit = limit
        super().__init__(self.detail)


class NotAuthenticated(ZyronError):
    """No valid credentials where they are required."""

    status_code = 401
    code = "not_authenticated"
    default_detail = "Sign in and send the access token as 'Authorization: Bearer <token>'."

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer", **(headers or {})})


class InvalidToken(NotAuthenticated):
    """A bearer token was sent but cannot be accepted."""

    code = "invalid_token"
    default_detail = "The access token is invalid or expired."

    def __init__(self, detail: str | None = None):
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


class InvalidCredentials(NotAuthenticated):
    """Email and password do not match an account."""

    code = "invalid_credentials"
    default_detail = "The email or password is incorrect."


class InvalidRefreshToken(NotAuthenticated):
    """The refresh token is unknown, expired, revoked or was already used."""

    code = "invalid_refresh_token"
    default_detail = "The refresh token is invalid, expired or already used; sign in again."


class NotFound(ZyronError):
    """The resource does not exist or belongs to someone else."""

    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class EmailTaken(ZyronError):
    """Signup with an email that already has an account."""

    status_code = 409
    code = "email_taken"
    default_detail = "An account with this email already exists; sign in instead."


class InvalidInput(ZyronError):
    """A request body that is well formed but not acceptable."""

    status_code = 422
    code = "validation_error"


class PayloadTooLarge(ZyronError):
    """The request body, or an uploaded file, exceeds the configured cap."""

    status_code = 413
    code = "payload_too_large"
    default_detail = "The request body or file exceeds the size allowed."


class UnsupportedMediaType(ZyronError):
    """An upload whose bytes are of an unsupported type, or contradict its declared type."""

    status_code = 415
    code = "unsupported_media_type"
    default_detail = (
        "Unsupported file type: send PNG, JPEG, GIF or WebP images, PDF, or UTF-8 text."
    )


class StorageQuotaExceeded(ZyronError):
    """An upload that would take the caller's files past MAX_STORAGE_BYTES_PER_USER."""

    status_code = 413
    code = "storage_quota_exceeded"
    default_detail = "Your files would exceed your storage quota; delete some first."


class NoProvider(ZyronError):
    """No model provider is configured."""

    status_code = 503
    code = "no_provider"
    default_detail = (
        "No model is configured: set ANTHROPIC_API_KEY, or OPENAI_BASE_URL and OPENAI_MODELS, "
        "or install the local model (make install without LOCAL_MODEL=0), and restart."
    )


class UnknownModel(ZyronError):
    """The request names a model this server does not offer."""

    status_code = 422
    code = "unknown_model"
    default_detail = "Unknown model; GET /models lists the ones this server offers."


class ContextTooLong(ZyronError):
    """The new message alone does not fit the model's context window."""

    status_code = 422
    code = "context_too_long"
    default_detail = "The message does not fit the model's context window."


class UnsupportedAttachment(ZyronError):
    """The model cannot take an attached file's kind (an image or PDF to a text-only model)."""

    status_code = 422
    code = "unsupported_attachment"
    default_detail = "The model cannot read this kind of attachment; GET /models says which can."


class ReasoningUnsupported(ZyronError):
    """The request asks for thinking from a model that does not think on request."""

    status_code = 422
    code = "reasoning_unsupported"
    default_detail = "This model does not reason on request; GET /models says which do."


class ReplyInProgress(ZyronError):
    """The reply to regenerate, or to follow with a new message, is still being produced."""

    status_code = 409
    code = "reply_in_progress"
    default_detail = "That reply is still being produced; cancel it or wait for it to end."


class UpstreamError(ZyronError):
    """The model provider failed; `code` is one of the upstream_* codes."""

    status_code = 502
    code = "upstream_unavailable"

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status_code: int,
        retryable: bool,
        retry_after: str | None = None,
    ):
        headers = {"Retry-After": retry_after} if retry_after else None
        super().__init__(detail, headers=headers)
        self.code = code
        self.status_code = status_code
        self.retryable = retryable
        self.retry_after = retry_after


HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "unavailable",
}


def error_response(
    status: int, code: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Render the one error shape."""
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def _describe_validation(errors: list[dict[str, Any]]) -> tuple[str, str]:
    """Name the first offending field in a sentence, and pick the error code."""
    if any(err.get("type") == "json_invalid" for err in errors):
        return "invalid_json", "The request body is not valid JSON."
    parts = []
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        where = ".".join(loc) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "validation_error", "; ".join(parts)


async def _zyron_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ZyronError)
    if exc.limit is not None:
        metrics.refusals.labels(exc.limit).inc()
    return error_response(exc.status_code, exc.code, exc.detail, exc.headers)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    code, detail = _describe_validation(list(exc.errors()))
    return error_response(422, code, detail)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    # FastAPI answers 400 to a body it cannot decode as UTF-8; to clients that is bad JSON.
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        return error_response(
            422, "invalid_json", "The request body is not valid JSON (it must be UTF-8)."
        )
    code = HTTP_CODES.get(exc.status_code, "error")
    detail = exc.detail if isinstance(exc.detail, str) else "The request cannot be served."
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names only the methods of the first route on the path; RFC 9110 wants
        # every method the resource takes (GET and POST /sessions are two routes).
        allowed = allowed_methods(request)
        headers["Allow"] = ", ".join(allowed)
        detail = f"{request.method} is not allowed here; allowed: {', '.join(allowed)}."
    return error_response(exc.status_code, code, detail, headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes at this request's path, sorted."""
    index: RouteMethods | None = getattr(request.app.state, "route_methods", None)
    # The path as the app's routes see it: without a --root-path prefix. Inside a mount (the
    # page's files) root_path also holds the mount's path; app_root_path is the app's own.
    path: str = request.scope.get("path", "")
    root: str = request.scope.get("app_root_path", request.scope.get("root_path", ""))
    if root and path.startswith(root):
        path = path[len(root) :] or "/"
    return index.at(path) if index is not None else []


@dataclass(frozen=True)
class RouteMethods:
    """Which methods each path of the app takes, for the `Allow` header of a 405."""

    patterns: tuple[tuple[re.Pattern[str], frozenset[str]], ...]

    @classmethod
    def of(cls, routes: Iterable[BaseRoute]) -> RouteMethods:
        """Index routes (an app's own and its routers'); a Mount serves files: GET, HEAD."""
        found: list[tuple[re.Pattern[str], frozenset[str]]] = []
        for route in routes:
            if isinstance(route, Mount):
                found.append((re.compile(f"^{re.escape(route.path)}/"), frozenset({"GET", "HEAD"})))
            elif isinstance(route, Route | APIRoute) and route.methods:
                found.append((route.path_regex, frozenset(route.methods)))
        return cls(tuple(found))

    def at(self, path: str) -> list[str]:
        """The methods taken at `path`, sorted."""
        methods: set[str] = set()
        for pattern, taken in self.patterns:
            if pattern.match(path):
                methods |= taken
        return sorted(methods)


def _is_unreachable(exc: BaseException) -> bool:
    """Tell whether an error means the database could not be reached (rather than a bug)."""
    if isinstance(exc, sa_exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", ""))
        # 08: connection failures; 53: out of connections or memory; 57P: shutdown, restart,
        # admin termination; 55000 here: the database is not accepting connections.
        if state.startswith(("08", "53", "57P")) or state == "55000":
            return True
        if isinstance(exc.orig, OSError):
            return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
        return True
    # asyncpg reports a refused or timed-out connection as a plain OSError.
    return isinstance(exc, OSError)


def _sqlstate(exc: BaseException) -> str:
    """The Postgres SQLSTATE behind a database error ('' for none)."""
    orig = getattr(exc, "orig", None)
    return str(getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None) or "")


# Text a client sent that Postgres cannot store: NUL (22021), or no UTF-8 for it (22P05).
_UNSTORABLE_TEXT = ("22021", "22P05")


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    if _sqlstate(exc) in _UNSTORABLE_TEXT:
        return error_response(
            422,
            "validation_error",
            "The request holds a character that text here cannot hold (NUL, U+0000).",
        )
    if _is_unreachable(exc):
        log.warning(
            "database unreachable",
            extra={"path": loggable_path(request.url.path), "reason": type(exc).__name__},
        )
        return error_response(
            503,
            "database_unavailable",
            "The database cannot be reached right now; try again in a moment.",
            {"Retry-After": "2"},
        )
    return await _unexpected_error(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # The trace goes to the log (never to the client); the path has no query string.
    log.error(
        "unhandled error",
        exc_info=exc,
        extra={"method": request.method, "path": loggable_path(request.url.path)},
    )
    return error_response(500, "internal_error", "An unexpected error occurred; it was logged.")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn every failure into the JSON error shape."""
    app.add_exception_handler(ZyronError, _zyron_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(sa_exc.SQLAlchemyError, _database_error)
    app.add_exception_handler(OSError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)


def error_responses(*errors: type[ZyronError]) -> dict[int | str, dict[str, Any]]:
    """Describe the error responses of a route for OpenAPI."""
    out: dict[int | str, dict[str, Any]] = {}
    for err in errors:
        entry = out.setdefault(err.status_code, {"model": ErrorBody, "description": ""})
        sep = "; " if entry["description"] else ""
        entry["description"] += f"{sep}`{err.code}`: {err.default_detail}"
    return out


class InvalidImport(ZyronError):
    """A POST /import file that is malformed or of no format Zyron reads; nothing is imported."""

    status_code = 422
    code = "invalid_import"
    default_detail = (
        "The file cannot be imported: send a Zyron export (.zip or .json), ChatGPT's "
        "conversations.json (or its export .zip), or Claude.ai's conversations.json."
    )


class NothingToShare(ZyronError):
    """A share link asked of a session that has no message yet."""

    status_code = 409
    code = "nothing_to_share"
    default_detail = "The session has no message yet; there is nothing to share."


class FileShared(ZyronError):
    """Deleting a file that a share link shows."""

    status_code = 409
    code = "file_shared"
    default_detail = "A share link shows this file; revoke the shares that show it first."


class ImportConflict(ZyronError):
    """Another import of the same conversations committed first; this one changed nothing."""

    status_code = 409
    code = "import_conflict"
    default_detail = (
        "Another import of the same conversations finished first; nothing of this one was "
        "kept. Import the file again to add what is still missing."
    )
