"""The cross-check: the product's channel report against the baseline's, figure by figure.

Counts must be equal. Money may differ by rounding: revenue sums amounts of two decimals (equal
unless one side rounds per day), cost is spread over days (a side that rounds each day's share
may differ by half a cent a day). Rates and ratios are compared to 1e-4 absolute (a side may
round them to four places) and are both None or both set.
"""

from __future__ import annotations

from decimal import Decimal

COUNTS = ("scans", "visitors", "adds", "new_customers", "lost", "removed", "net_adds",
          "pending_30d", "orders", "buyers")  # fmt: skip
RATES = ("scan_to_add", "consult_72h_rate", "retained_30d_rate", "repurchase_rate", "roi")
MONEY = ("revenue", "cost", "cost_per_new_customer")
FIGURES = COUNTS + RATES + MONEY
RATE_TOLERANCE = 1e-4


def _key(value: object) -> object:
    """Channel keys as the baseline has them: the channel id, None for adds with no code."""
    if value in (None, "", 0, "0", "none", "None"):
        return None
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)


def _field(row: object, name: str) -> object:
    return row.get(name) if isinstance(row, dict) else getattr(row, name, None)


def _differs(name: str, ours: object, theirs: object, days: int) -> bool:
    if name in COUNTS:
        return int(ours or 0) != int(theirs or 0)
    if ours is None or theirs is None:
        # A rate of an empty denominator is None on both sides; money 0 may be given as None.
        if name in MONEY:
            return Decimal(str(ours or 0)) != Decimal(str(theirs or 0))
        return (ours is None) != (theirs is None)
    if name in MONEY:
        tolerance = Decimal("0.005") * days + Decimal("0.01") if name == "cost" else Decimal("0.01")
        return abs(Decimal(str(ours)) - Decimal(str(theirs))) > tolerance
    return abs(float(ours) - float(theirs)) > RATE_TOLERANCE  # type: ignore[arg-type]


def reports_compare(product_rows: list, baseline_rows: list[dict], *, days: int) -> list[str]:
    """The differences, one line each ("channel 12 adds: product 10, baseline 11"); a
    channel missing on one side is compared as all zeros there."""
    product = {_key(_field(r, "key")): r for r in product_rows}
    baseline = {r["key"]: r for r in baseline_rows}
    differences = []
    for key in sorted(product.keys() | baseline.keys(), key=lambda k: (k is None, str(k))):
        ours = baseline.get(key, {})
        theirs = product.get(key, {})
        for name in FIGURES:
            a = ours.get(name) if ours else None
            b = _field(theirs, name) if theirs else None
            if _differs(name, a, b, days):
                differences.append(f"channel {key} {name}: product {b}, baseline {a}")
    return differences
