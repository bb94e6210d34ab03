"""GET /search: the caller's messages and session titles that match a query."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from zyron.auth.deps import CurrentUser
from zyron.db.deps import UserDb
from zyron.errors import InvalidToken, NotAuthenticated, error_responses
from zyron.search import service
from zyron.search.schemas import SearchPage
from zyron.state import get_state

router = APIRouter(tags=["search"], responses=error_responses(NotAuthenticated, InvalidToken))


@router.get("/search", response_model=SearchPage)
async def search(
    request: Request,
    principal: CurrentUser,
    db: UserDb,
    q: Annotated[
        str,
        Query(
            min_length=1,
            description='Words, "quoted phrases", OR between alternatives, -word to exclude '
            "(web search syntax). At most MAX_SEARCH_QUERY_CHARS (256) characters; a query "
            "with nothing to look for (only operators, excluded or stop words) is a 422.",
        ),
    ],
    limit: Annotated[int, Query(ge=1, description="At most MAX_SEARCH_PAGE (100).")] = 20,
    before: Annotated[
        str | None, Query(description="The previous page's `next_before`: the next page.")
    ] = None,
) -> Response:
    """Search the caller's messages and session titles: best matches first, newest among equals."""
    settings = get_state(request).settings
    page = await service.search(db, settings, principal.user_id, q=q, limit=limit, before=before)
    # Encoded here, once: returned as the model, FastAPI would validate the page again.
    return Response(page.model_dump_json(), media_type="application/json")
