"""Funding payments between the two sides of a market, zero-sum to the micro-USD.

With a positive rate longs pay and shorts receive (a negative rate reverses it). Each payer
pays ``|rate| * |value(lots, mark)|`` truncated toward zero; the receivers share exactly the
total paid, pro rata to their lots (largest remainder), so no unit is created or lost.
"""

from __future__ import annotations

from collections.abc import Sequence

from liquidation.money import split_pro_rata, value


def funding_payments(
    positions: Sequence[tuple[str, int]], mark: int, rate: float
) -> list[tuple[str, int]]:
    """Signed payments (bucket, amount) of one settlement, summing to exactly zero.

    Parameters
    ----------
    positions : sequence of (str, int)
        Buckets and their signed lots in the market (zero lots are ignored).
    mark : int
        Mark price, micro-USD per unit.
    rate : float
        Funding rate of the settlement (finite and bounded, checked by the caller).

    Returns
    -------
    list of (str, int)
        Non-zero payments: negative for payers, positive for receivers.
    """
    payer_side = 1 if rate > 0 else -1
    payers = [(b, lots) for b, lots in positions if lots * payer_side > 0]
    receivers = [(b, lots) for b, lots in positions if lots * payer_side < 0]
    if rate == 0 or not payers or not receivers:
        return []
    paid = [(b, int(abs(value(lots, mark)) * abs(rate))) for b, lots in payers]
    total = sum(amount for _, amount in paid)
    shares = split_pro_rata(total, [abs(lots) for _, lots in receivers]) if total else []
    payments = [(b, -amount) for b, amount in paid if amount]
    payments += [(b, part) for (b, _), part in zip(receivers, shares, strict=False) if part]
    return payments
