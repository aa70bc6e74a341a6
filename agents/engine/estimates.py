"""What HAAO expects a proposed ticket to cost before any model works on it (Gate 1)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from accounts.models import Organization
from agents import pricing
from agents.coder.client import estimate_tokens
from agents.coder.prompt import coder_messages
from agents.engine.routing import pick_coder
from agents.ledger import endpoint_price

# Tokens a coder writes in one attempt beyond rewriting the excerpts it was given, by the
# ticket's complexity (1 to 5): a rough guide for Gate 1, not a budget or a limit.
OUTPUT_TOKENS_BY_COMPLEXITY = {1: 400, 2: 800, 3: 1600, 4: 3200, 5: 6400}


@dataclass(frozen=True)
class CostEstimate:
    """What one coder attempt at a proposed ticket is expected to cost, and on which endpoint.

    `cost` is None when no coder endpoint is enabled (`why` says so); nothing has been spent.
    """

    endpoint: str
    model: str
    input_tokens: int
    output_tokens: int
    cost: Decimal | None
    why: str = ""

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def ticket_cost_estimates(*, organization: Organization,
                          specs: list[dict[str, Any]]) -> list[CostEstimate]:
    """The expected cost of one coder attempt at each spec: the prompt HAAO would send and an
    answer sized by the ticket's complexity, priced at the coder endpoint routing picks now.

    Two queries whatever the number of specs (the coder endpoints and their load).
    """

    endpoint = pick_coder(organization=organization)
    if endpoint is None:
        why = "no coder endpoint is enabled and healthy, so no price applies yet"
        return [CostEstimate("", "", 0, 0, None, why) for _ in specs]
    price = endpoint_price(endpoint=endpoint)
    estimates = []
    for spec in specs:
        prompt = sum(estimate_tokens(message["content"])
                     for message in coder_messages(spec=spec))
        excerpts = sum(estimate_tokens(str(excerpt.get("content", "")))
                       for excerpt in spec.get("code_context") or [])
        answer = excerpts + OUTPUT_TOKENS_BY_COMPLEXITY.get(spec.get("complexity", 3), 1600)
        estimates.append(CostEstimate(endpoint.name, endpoint.model, prompt, answer,
                                      pricing.cost_of(price, prompt, answer)))
    return estimates
