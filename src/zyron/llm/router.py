"""GET /models: the models this server offers, with their limits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from zyron.llm.base import ProviderKind
from zyron.state import get_state

router = APIRouter(tags=["models"])


class ModelRead(BaseModel):
    """A model a request or session may name."""

    id: str
    provider: str = Field(description="The provider instance that serves it.")
    kind: ProviderKind = Field(description="anthropic, openai (compatible) or local.")
    context_window: int = Field(description="Tokens of prompt and reply together.")
    max_output: int = Field(description="The most tokens one reply may have.")
    default: bool


class ModelList(BaseModel):
    """What GET /models answers."""

    default: str | None
    title_model: str | None
    models: list[ModelRead]


@router.get("/models")
async def list_models(request: Request) -> ModelList:
    """List the models this server can use; `default` is used when a request names none."""
    registry = get_state(request).models
    return ModelList(
        default=registry.default,
        title_model=registry.title_model,
        models=[
            ModelRead(
                id=spec.id,
                provider=spec.provider,
                kind=registry.providers[spec.provider].kind,
                context_window=spec.context_window,
                max_output=spec.max_output,
                default=spec.id == registry.default,
            )
            for spec in registry.models.values()
        ],
    )
