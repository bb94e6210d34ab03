"""GET /metrics on the API's port, for a scraper holding METRICS_TOKEN (off without it)."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request, Response
from starlette.exceptions import HTTPException

from zyron.errors import NotAuthenticated
from zyron.ops import metrics
from zyron.ops.sampler import sample
from zyron.state import get_state

# Not in the OpenAPI document: it is the operator's, and speaks Prometheus, not JSON.
router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def scrape(request: Request) -> Response:
    """Render the metrics of every worker; 404 when off, 401 without the right token."""
    state = get_state(request)
    token = state.settings.metrics_token
    if token is None:
        raise HTTPException(404, "Not Found")  # the same answer as for any unknown path
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), expected):
        raise NotAuthenticated(
            "GET /metrics needs 'Authorization: Bearer <METRICS_TOKEN>'.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    await sample(state)  # this process's gauges are fresh; the others' are seconds old at most
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)
