"""Dollars per 1,000 notes: API teachers from their token ledger, local systems from machine time.

Two kinds of cost, one unit:
- **API teachers** (OpenAI, Gemini): the ledger's input/output tokens × the dated price table in
  ``teachers.cost`` (list price, or the 50% Batch API price with ``batch=True``). Prices live
  there only, never duplicated here.
- **Local systems** (students, dictionary matchers, an in-process LLM): measured wall seconds ×
  the hourly price of the machine they would rent on. The defaults are small on-demand cloud
  VMs; users set their own (``--cpu-hourly`` / ``--gpu-hourly``, or a recipe) — an on-premise
  server's amortised hourly cost belongs there.

Hourly prices are on-demand Linux list prices in AWS us-east-1. This offline build machine could
not re-fetch the AWS page; ``checked`` says where each figure was confirmed and when. Update the
table (with its date) rather than trusting an old figure.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

AWS_ON_DEMAND = "https://aws.amazon.com/ec2/pricing/on-demand/"


@dataclass(frozen=True)
class MachinePrice:
    """An hourly machine price with its source (US dollars per hour, on-demand, no discounts)."""

    key: str
    hourly_usd: float
    description: str
    gpu: bool
    source: str
    checked: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MACHINES: dict[str, MachinePrice] = {
    m.key: m
    for m in (
        MachinePrice("aws-m6i.large", 0.096, "2 vCPU (Intel Xeon, AVX-512), 8 GiB; the closest rental to the 2-core "
                     "machine the benchmarks ran on", False, AWS_ON_DEMAND,
                     "us-east-1 list price, unchanged since the m6i launch (2021); not re-fetched offline"),
        MachinePrice("aws-c6i.large", 0.085, "2 vCPU, 4 GiB, compute-optimised", False, AWS_ON_DEMAND,
                     "us-east-1 list price since launch (2021); not re-fetched offline"),
        MachinePrice("aws-m7g.large", 0.0816, "2 vCPU Graviton3 (ARM), 8 GiB", False, AWS_ON_DEMAND,
                     "us-east-1, quoted for June 2026 by factualminds.com/blog/amazon-ec2-on-demand-pricing-"
                     "instance-families-2026"),
        MachinePrice("aws-g4dn.xlarge", 0.526, "4 vCPU, 16 GiB, 1x NVIDIA T4 16 GB", True, AWS_ON_DEMAND,
                     "us-east-1 list price since launch (2019); not re-fetched offline"),
        MachinePrice("aws-g5.xlarge", 1.006, "4 vCPU, 16 GiB, 1x NVIDIA A10G 24 GB", True, AWS_ON_DEMAND,
                     "us-east-1, quoted for June 2026 by factualminds.com/blog/amazon-ec2-on-demand-pricing-"
                     "instance-families-2026"),
    )
}
DEFAULT_CPU = "aws-m6i.large"
DEFAULT_GPU = "aws-g5.xlarge"


class CostError(ValueError):
    """A cost that cannot be computed honestly (unknown machine, no notes, no price)."""


def machine(key_or_hourly: str | float | None, gpu: bool = False) -> MachinePrice:
    """A table entry by key, a user-given hourly price (a number), or the CPU/GPU default."""
    if key_or_hourly is None:
        return MACHINES[DEFAULT_GPU if gpu else DEFAULT_CPU]
    if isinstance(key_or_hourly, (int, float)) or _is_number(key_or_hourly):
        hourly = float(key_or_hourly)
        if hourly < 0:
            raise CostError(f"an hourly price cannot be negative: {hourly}")
        return MachinePrice("user", hourly, "hourly price given by the user", gpu, "user setting", "user setting")
    if key_or_hourly not in MACHINES:
        raise CostError(f"unknown machine {key_or_hourly!r}; known: {', '.join(MACHINES)} (or give a $/hour number)")
    return MACHINES[key_or_hourly]


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Prices:
    """The machines local systems are billed on (what ``distill bench`` / a recipe may override)."""

    cpu: MachinePrice = MACHINES[DEFAULT_CPU]
    gpu: MachinePrice = MACHINES[DEFAULT_GPU]
    batch_api: bool = False

    @classmethod
    def from_options(cls, cpu: str | float | None = None, gpu: str | float | None = None,
                     batch_api: bool = False) -> "Prices":
        return cls(machine(cpu, gpu=False), machine(gpu, gpu=True), batch_api)

    def for_device(self, device: str) -> MachinePrice:
        """GPU price for "gpu" and torch's "cuda" / "cuda:N" device names, else the CPU price."""
        return self.gpu if device == "gpu" or str(device).startswith("cuda") else self.cpu

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu.to_dict(), "gpu": self.gpu.to_dict(), "batch_api": self.batch_api}


def per_1k(dollars: float, notes: int) -> float:
    if notes <= 0:
        raise CostError("cannot compute a cost per note over zero notes")
    return dollars / notes * 1000.0


def machine_cost_per_1k(seconds: float, notes: int, price: MachinePrice) -> dict[str, Any]:
    """Local systems: the wall time of the measured run, billed by the hour."""
    dollars = seconds / 3600.0 * price.hourly_usd
    return {"usd_per_1k_notes": per_1k(dollars, notes), "basis": "machine-time", "machine": price.key,
            "hourly_usd": price.hourly_usd, "seconds": seconds, "notes": notes}


def api_cost_per_1k(model: Any, input_tokens: int, output_tokens: int, notes: int, batch: bool = False) -> dict[str, Any]:
    """API teachers: ledger tokens × the dated price table in ``teachers.cost``. ``model`` is a
    model name looked up there, or the teacher's own ``teachers.cost.Price``."""
    from teachers.cost import UnknownPrice, price_for

    if hasattr(model, "dollars"):
        price = model
    else:
        try:
            price = price_for(str(model))
        except UnknownPrice as e:
            raise CostError(str(e)) from None
    dollars = price.dollars(input_tokens, output_tokens, batch=batch)
    return {"usd_per_1k_notes": per_1k(dollars, notes), "basis": "api-tokens" + ("-batch" if batch else ""),
            "model": price.model, "input_per_1m": price.input_per_1m, "output_per_1m": price.output_per_1m,
            "price_source": price.source, "price_effective": price.effective,
            "input_tokens": input_tokens, "output_tokens": output_tokens, "notes": notes}
