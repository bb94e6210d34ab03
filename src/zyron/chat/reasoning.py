"""How much of a reply may be thinking: the request's reasoning fitted to the model's limits.

Thinking counts inside `max_tokens` (Anthropic: a budget of at least 1024 tokens, below
max_tokens). A request that asks for reasoning without max_tokens gets MAX_TOKENS for its
answer on top of the thinking allowance, within the model's max output; one that names
max_tokens must leave room for the budget it names, or it is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Iterable

from zyron.chat.schemas import ReasoningOptions
from zyron.errors import InvalidInput, ReasoningUnsupported
from zyron.llm.base import Effort, ModelSpec, Reasoning

MIN_BUDGET_TOKENS = 1024
# A reply that thinks has room for the least thinking and as much again for its answer.
MIN_TOKENS_WITH_THINKING = 2 * MIN_BUDGET_TOKENS
DEFAULT_EFFORT: Effort = "medium"
# The thinking allowance of an effort: the budget sent to a model that takes only budgets,
# and the room added to max_tokens for one that thinks adaptively.
EFFORT_BUDGETS: dict[Effort, int] = {
    "low": 2_048,
    "medium": 8_192,
    "high": 16_384,
    "xhigh": 24_576,
    "max": 32_000,
}


def allowance(options: ReasoningOptions | None, cap: int) -> int:
    """Return the thinking tokens a request may add to MAX_TOKENS, within MAX_REASONING_TOKENS.

    A budget over the cap is refused; an effort's allowance is lowered to it.
    """
    if options is None:
        return 0
    if options.budget_tokens is not None:
        if options.budget_tokens > cap:
            raise InvalidInput(
                f"reasoning.budget_tokens: at most {cap} on this server (MAX_REASONING_TOKENS)"
            )
        return options.budget_tokens
    return min(EFFORT_BUDGETS[options.effort or DEFAULT_EFFORT], cap)


def fit_reasoning(
    spec: ModelSpec,
    options: ReasoningOptions | None,
    *,
    max_tokens: int | None,
    default_max_tokens: int,
    max_reasoning_tokens: int,
    reasoning_models: Iterable[str],
) -> tuple[int, Reasoning | None]:
    """Return the reply budget (max_tokens) and the thinking to ask of the model."""
    if options is None:
        return min(max_tokens or default_max_tokens, spec.max_output), None
    if spec.reasoning is None:
        others = ", ".join(reasoning_models) or "none on this server"
        raise ReasoningUnsupported(
            f"Model '{spec.id}' does not reason on request; models that do: {others}."
        )
    effort = options.effort or DEFAULT_EFFORT
    if options.budget_tokens is not None and spec.reasoning == "adaptive":
        raise InvalidInput(
            f"reasoning.budget_tokens: model '{spec.id}' thinks adaptively and refuses a token "
            'budget; send reasoning: {"effort": "low" … "max"} instead'
        )
    if max_reasoning_tokens < MIN_BUDGET_TOKENS:
        raise ReasoningUnsupported("Reasoning is turned off on this server (MAX_REASONING_TOKENS).")
    thinking = allowance(options, max_reasoning_tokens)
    cap = min(max_tokens or default_max_tokens + thinking, spec.max_output)
    if options.budget_tokens is None and spec.reasoning != "budget":
        return cap, Reasoning(effort=effort)
    budget = thinking
    if budget >= cap:
        if options.budget_tokens is not None:
            which = "max_tokens" if max_tokens else f"the model's max output ({spec.max_output})"
            raise InvalidInput(
                f"reasoning.budget_tokens: {budget} must be below {which} ({cap}): thinking "
                "counts inside max_tokens, so raise max_tokens or lower the budget"
            )
        # An effort on a model that takes budgets: a smaller budget that leaves half for text.
        budget = cap // 2
        if budget < MIN_BUDGET_TOKENS:
            raise InvalidInput(
                f"max_tokens: {cap} leaves no room to think; thinking needs at least "
                f"{MIN_BUDGET_TOKENS} tokens and room for the answer inside max_tokens"
            )
    return cap, Reasoning(budget_tokens=budget)
