"""The base of every JSON body clients send: read strictly, as its schema says.

Lax parsing would take `"stream": 0` as false and `"max_tokens": "5"` as 5: values the
OpenAPI document calls invalid would be accepted, and clients generated from it could not
trust it.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict


def whole_float(value: object) -> object:
    """1.0 is an integer to JSON Schema; strict mode would refuse it."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# An integer as JSON Schema reads one: 3 or 3.0, never "3" or true. Bounds go before the
# validator, where pydantic writes them as JSON Schema's `minimum` (after it, as `ge`).
PositiveJsonInt = Annotated[int, Field(ge=1), BeforeValidator(whole_float)]

# FastAPI validates bodies as Python objects, where strict mode takes only a UUID instance:
# a UUID field reads its JSON string (and nothing else JSON can hold) laxly.
JsonUUID = Annotated[uuid.UUID, Strict(False)]


class RequestBody(BaseModel):
    """A request body: no coercion between JSON types (pydantic's strict mode)."""

    model_config = ConfigDict(strict=True)
