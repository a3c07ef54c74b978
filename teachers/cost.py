"""A dated price table for LLM teachers, and the ledger arithmetic built on it.

Prices change; a cost figure is only meaningful next to the date of the price it used, so
every entry names its source page and the date the price took effect (the model's launch
or price-change date). The figures are the list prices given in the project's teacher issue;
this build machine has no internet, so they were not re-checked against the pages on
``TABLE_DATE`` — update the table rather than trusting an old figure.

Models served on this machine (``local:``, a loopback vLLM / llama.cpp server) cost no
dollars; an unknown remote model raises :class:`UnknownPrice` instead of silently
counting zero.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

TABLE_DATE = "2026-11-23"  # when this table was compiled
BATCH_DISCOUNT = 0.5  # OpenAI Batch API and Gemini batch mode both bill 50% of list price

OPENAI_PRICING = "https://openai.com/api/pricing/"
GEMINI_PRICING = "https://ai.google.dev/gemini-api/docs/pricing"


class UnknownPrice(ValueError):
    """No price is known for a model: refuse to report a made-up cost."""


@dataclass(frozen=True)
class Price:
    """US dollars per one million tokens, with where and since when."""

    model: str
    input_per_1m: float
    output_per_1m: float
    source: str
    effective: str  # date the price took effect (ISO)
    batch_discount: float = BATCH_DISCOUNT

    def dollars(self, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
        cost = (input_tokens * self.input_per_1m + output_tokens * self.output_per_1m) / 1_000_000
        return cost * self.batch_discount if batch else cost


PRICES: dict[str, Price] = {
    p.model: p
    for p in (
        Price("gpt-4o", 2.50, 10.00, OPENAI_PRICING, "2024-08-06"),
        Price("gpt-4o-mini", 0.15, 0.60, OPENAI_PRICING, "2024-07-18"),
        Price("o1-mini", 3.00, 12.00, OPENAI_PRICING, "2024-09-12"),
        Price("gemini-2.0-flash", 0.10, 0.40, GEMINI_PRICING, "2025-02-05"),
    )
}

FREE = Price("local", 0.0, 0.0, "runs on this machine", TABLE_DATE)


_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{3})")  # "-2024-07-18" (OpenAI), "-001" (Gemini)


def price_for(model: str) -> Price:
    """The price of ``model``: exact name, else a versioned snapshot of a known model.

    A snapshot is the name plus ``-YYYY-MM-DD`` (OpenAI) or ``-NNN`` (Gemini), and a dated one
    bills as its family only from the price's effective date on: ``gpt-4o-2024-05-13``
    predates the listed gpt-4o price and had its own. Any other suffix is a different model
    (``gemini-2.0-flash-lite``, ``gpt-4o-audio-preview``) and gets :class:`UnknownPrice`,
    never a relative's price. A ``family:`` prefix is ignored.
    """
    name = model.split(":", 1)[1] if ":" in model else model
    if model.startswith("local:"):
        return FREE
    if name in PRICES:
        return PRICES[name]
    for known, price in PRICES.items():
        m = _SNAPSHOT.fullmatch(name[len(known):]) if name.startswith(known) else None
        if m and (len(m.group(1)) == 3 or m.group(1) >= price.effective):
            return price
    raise UnknownPrice(
        f"no price for model {model!r} in teachers/cost.py (known: {', '.join(sorted(PRICES))}, and their snapshots "
        "dated from the listed price's effective date); add it with its source and date"
    )


def dollars(model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
    """Cost of one request (or a sum of requests) at list price, or batch price."""
    return price_for(model).dollars(input_tokens, output_tokens, batch=batch)
