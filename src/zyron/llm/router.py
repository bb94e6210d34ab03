"""GET /models: the models this server offers, with their limits."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from zyron.llm.base import ModelSpec, ProviderKind
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
    vision: bool = Field(description="Takes images as attachments.")
    pdf: bool = Field(description="Takes PDF documents as attachments.")
    reasoning: bool = Field(description="Thinks on request (`reasoning` in POST /chat).")
    reasoning_modes: list[str] = Field(
        description="The forms of `reasoning` it takes: `budget_tokens`, `effort` (an effort "
        "works with every reasoning model)."
    )


class ModelList(BaseModel):
    """What GET /models answers."""

    default: str | None
    title_model: str | None
    models: list[ModelRead]


def _modes(spec: ModelSpec) -> list[str]:
    if spec.reasoning is None:
        return []
    return ["effort"] if spec.reasoning == "adaptive" else ["budget_tokens", "effort"]


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
                vision=spec.vision,
                pdf=spec.pdf,
                reasoning=spec.reasoning is not None,
                reasoning_modes=_modes(spec),
            )
            for spec in registry.models.values()
        ],
    )
