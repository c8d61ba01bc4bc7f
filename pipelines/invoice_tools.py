"""The Python of invoice_desk.yaml: totalling the checked lines (a code step) and looking an order up
(a tool the model calls). Found next to the pipeline file; `pipeline validate` reads it, a run imports it."""

from __future__ import annotations

from typing import Literal

# A stand-in for the order system a real pipeline would query.
ORDERS = {
    "ORD-1042": {"status": "shipped", "carrier": "DHL", "tracking": "JD014600003828", "paid": True},
    "ORD-2077": {"status": "awaiting payment", "carrier": None, "tracking": None, "paid": False},
}


def total_lines(lines: list[dict], verdicts: list[dict | None], currency: str = "EUR") -> dict:
    """Add up the invoice's lines; a line a check flagged (or could not check) is counted apart."""
    total = 0.0
    flagged = []
    for index, (line, verdict) in enumerate(zip(lines, verdicts, strict=True)):
        total += line["amount"]
        arithmetic_ok = abs(line["quantity"] * line["unit_price"] - line["amount"]) < 0.005
        if verdict is None or not verdict["plausible"] or not arithmetic_ok:
            flagged.append(index)
    return {"total": round(total, 2), "currency": currency, "lines": len(lines), "flagged_lines": flagged}


def get_order(order_id: str, fields: list[Literal["status", "carrier", "tracking", "paid"]] | None = None) -> dict:
    """Look an order up in the order system by its id.

    Args:
        order_id: The order's id as printed on the invoice, e.g. ORD-1042.
        fields: Which fields to return (all of them when left out).
    """
    order = ORDERS.get(order_id.strip().upper())
    if order is None:
        return {"order_id": order_id, "found": False}
    chosen = {name: value for name, value in order.items() if fields is None or name in fields}
    return {"order_id": order_id, "found": True, **chosen}
