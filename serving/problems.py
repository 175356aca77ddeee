"""RFC 9457 problem details (``application/problem+json``) for every error the API returns.

Clients (keepers, protocols, dashboards) branch on ``status`` and ``type``; humans read
``title`` and ``detail``. Every error path of the app, including FastAPI's own validation
errors, the serving layer's own errors (:func:`problem_for`) and unexpected exceptions,
ends here so the wire format never varies. Request-derived text (paths, names) reaches
the log only through :func:`serving.input_validation.loggable`.

=================================  ======  ===============================================
error                              status  ``type`` slug
=================================  ======  ===============================================
InvalidInputError                  422     ``invalid-parameter`` (``parameter`` member)
StrictJsonError                    422     ``invalid-json``
UnpublishedAssetError              404     ``unknown-asset``
OperatorActionError                409     ``operator-action-rejected``
IntegrityFailure                   503     ``integrity-failure`` (``asset`` member)
StoreIdentityError                 503     ``store-replaced``
StoreBusyError                     503     ``store-busy`` (``Retry-After: 1``)
StoreReadOnlyError                 503     ``store-read-only``
StoreNotInitialisedError           503     ``store-uninitialised``
other PublicationStoreError        503     ``store-unavailable``
AdminKeyFileError                  503     ``admin-keys-unavailable``
=================================  ======  ===============================================
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from serving.errors import (
    AdminKeyFileError,
    IntegrityFailure,
    InvalidInputError,
    OperatorActionError,
    ServingError,
    StoreBusyError,
    StoreIdentityError,
    StoreNotInitialisedError,
    StoreReadOnlyError,
    UnpublishedAssetError,
)
from serving.input_validation import loggable
from serving.strict_json import StrictJsonError

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://dynamargin.dev/problems/"

logger = logging.getLogger(__name__)


class ProblemError(Exception):
    """An error the API reports to the client as an RFC 9457 problem.

    Parameters
    ----------
    status
        HTTP status code.
    slug
        Short machine name; the problem ``type`` is ``PROBLEM_TYPE_BASE + slug``.
    detail
        Sentence for a human: what went wrong and what to do.
    headers
        Extra response headers (e.g. ``WWW-Authenticate``).
    extensions
        Extra members of the problem object (e.g. ``asset``, ``errors``).
    """

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extensions = dict(extensions or {})


class UnknownAssetProblem(ProblemError):
    """404: the asset has never been published to this store."""

    def __init__(self, asset: str, known: list[str]) -> None:
        shown = ", ".join(known[:20]) or "none yet"
        super().__init__(
            404,
            "unknown-asset",
            f"No snapshot has been published for asset {asset!r}. Known assets: {shown}.",
            extensions={"asset": asset},
        )


class NoSnapshotAtError(ProblemError):
    """404: the asset exists but nothing had been published at the requested time."""

    def __init__(self, asset: str, at: str) -> None:
        super().__init__(
            404,
            "no-snapshot-at-time",
            f"Nothing was published for asset {asset!r} at or before {at}; ask for a later time.",
            extensions={"asset": asset, "at": at},
        )


class BadParameterError(ProblemError):
    """422: a parameter parsed but makes no sense (e.g. ``from`` after ``to``)."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(422, "invalid-parameter", detail, extensions={"parameter": parameter})


def problem_for(exc: ServingError) -> ProblemError:
    """The problem a serving-layer error is reported as (see the table above)."""
    if isinstance(exc, InvalidInputError):
        return BadParameterError(exc.field, str(exc))
    if isinstance(exc, StrictJsonError):
        return ProblemError(422, "invalid-json", str(exc))
    if isinstance(exc, UnpublishedAssetError):
        return UnknownAssetProblem(exc.asset, exc.known)
    if isinstance(exc, OperatorActionError):
        return ProblemError(409, "operator-action-rejected", str(exc))
    if isinstance(exc, IntegrityFailure):
        return ProblemError(
            503,
            "integrity-failure",
            f"The stored rows of {('asset ' + exc.asset) if exc.asset else 'the store'} do "
            "not verify (hash chain, signature or signed checkpoint), so they are not "
            "served; the operator has been alerted. Details: " + "; ".join(exc.problems[:3]),
            extensions={"asset": exc.asset} if exc.asset else None,
        )
    if isinstance(exc, AdminKeyFileError):
        return ProblemError(
            503,
            "admin-keys-unavailable",
            "The server's admin key configuration is invalid; the operator has been told "
            "in the server log. Retry later.",
        )
    slug, headers = "store-unavailable", None
    if isinstance(exc, StoreIdentityError):
        slug = "store-replaced"
    elif isinstance(exc, StoreBusyError):
        slug, headers = "store-busy", {"Retry-After": "1"}
    elif isinstance(exc, StoreReadOnlyError):
        slug = "store-read-only"
    elif isinstance(exc, StoreNotInitialisedError):
        slug = "store-uninitialised"
    return ProblemError(503, slug, str(exc), headers=headers)


def validation_problem(errors: Iterable[Mapping[str, Any]], prefix: str = "") -> ProblemError:
    """422 ``invalid-parameter`` listing pydantic-style validation errors.

    Parameters
    ----------
    errors
        Items with ``loc`` and ``msg`` (FastAPI's or pydantic's ``errors()``).
    prefix
        First element of every location (e.g. ``body`` for a request body).
    """
    listed = [
        {
            "location": ".".join(
                str(part) for part in (*((prefix,) if prefix else ()), *err.get("loc", ()))
            ),
            "message": err.get("msg", ""),
        }
        for err in errors
    ]
    summary = "; ".join(f"{e['location']}: {e['message']}" for e in listed[:5])
    return ProblemError(
        422,
        "invalid-parameter",
        f"The request has invalid parameters ({summary}). Fix them and retry.",
        extensions={"errors": listed},
    )


def problem_response(
    status: int,
    slug: str,
    detail: str,
    *,
    instance: str | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> Response:
    """Build an ``application/problem+json`` response.

    Parameters
    ----------
    status
        HTTP status code; its standard phrase becomes the ``title``.
    slug
        Machine name appended to :data:`PROBLEM_TYPE_BASE` to form ``type``.
    detail
        Human explanation specific to this occurrence.
    instance
        The request path this problem occurred on.
    headers, extensions
        Extra response headers and problem members.

    Returns
    -------
    Response
        The serialized problem with the right status and media type.
    """
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + slug,
        "title": _phrase(status),
        "status": status,
        "detail": detail,
    }
    if instance is not None:
        body["instance"] = instance
    for key, value in (extensions or {}).items():
        body.setdefault(key, value)
    return Response(
        json.dumps(body, default=str, separators=(",", ":")).encode(),
        status_code=status,
        media_type=PROBLEM_MEDIA_TYPE,
        headers=dict(headers or {}),
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Route every error of ``app`` through :func:`problem_response`.

    Parameters
    ----------
    app
        The FastAPI application to configure.
    """
    app.add_exception_handler(ProblemError, _handle_problem)
    app.add_exception_handler(ServingError, _handle_serving_error)
    app.add_exception_handler(RequestValidationError, _handle_validation)
    app.add_exception_handler(StarletteHTTPException, _handle_http)
    app.add_exception_handler(Exception, _handle_unexpected)


async def _handle_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ProblemError)
    return problem_response(
        exc.status,
        exc.slug,
        exc.detail,
        instance=request.url.path,
        headers=exc.headers,
        extensions=exc.extensions,
    )


async def _handle_serving_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ServingError)
    problem = problem_for(exc)
    if problem.status >= 500:
        logger.warning(
            "%s %s answered %d %s: %s",
            request.method,
            loggable(request.url.path),
            problem.status,
            problem.slug,
            exc,
        )
    return await _handle_problem(request, problem)


async def _handle_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    return await _handle_problem(request, validation_problem(exc.errors()))


async def _handle_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    slugs = {404: "not-found", 405: "method-not-allowed", 413: "content-too-large"}
    detail = exc.detail if isinstance(exc.detail, str) else _phrase(exc.status_code)
    if exc.status_code == 404:
        path = request.url.path
        hint = f" Did you mean {path.rstrip('/')}?" if path.endswith("/") and len(path) > 1 else ""
        detail = f"No such resource: {loggable(path)}.{hint} See /docs for the API."
    return problem_response(
        exc.status_code,
        slugs.get(exc.status_code, "http-error"),
        detail,
        instance=request.url.path,
        headers=exc.headers,
    )


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    # Logged with the traceback for operators; the client only learns that it failed.
    logger.exception("unhandled error on %s %s", request.method, loggable(request.url.path))
    return problem_response(
        500,
        "internal-error",
        "The server failed to answer this request; it has been logged. Retry later.",
        instance=request.url.path,
    )


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
