"""The model registry as a typed dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from zyron.llm.registry import Registry
from zyron.state import get_state


def _registry(request: Request) -> Registry:
    return get_state(request).models


Models = Annotated[Registry, Depends(_registry)]
