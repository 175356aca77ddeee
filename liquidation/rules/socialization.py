"""Socialized loss: the last step of the waterfall, charged to position holders only.

A deficit that the insurance fund, the backstop vault and ADL could not absorb is charged
pro rata to the positive equity of the buckets that hold positions: they are the side of the
market that the bankrupt position traded with. Depositors without positions are never
charged. Each charge is at most the bucket's equity, so no one is pushed below zero by it;
what even the holders' equity cannot cover is written off (and shows in the ledger).
"""

from __future__ import annotations

from collections.abc import Sequence

from liquidation.money import split_pro_rata


def socialize(amount: int, holders: Sequence[tuple[str, int]]) -> tuple[list[tuple[str, int]], int]:
    """Split ``amount`` over ``holders`` (bucket, equity) in proportion to positive equity.

    Parameters
    ----------
    amount : int
        The deficit, micro-USD, ``>= 0``.
    holders : sequence of (str, int)
        Buckets holding positions and their equity (non-positive equity pays nothing).

    Returns
    -------
    charges : list of (str, int)
        Non-zero charges in ``holders`` order; each ``<=`` that bucket's equity.
    written_off : int
        ``amount - sum(charges)``, ``> 0`` only if it exceeds the holders' total equity.

    Contract (PEP 316; CrossHair and tests/verification check it):

    pre: amount >= 0
    pre: len({bucket for bucket, _ in holders}) == len(holders)
    post: sum(part for _, part in __return__[0]) + __return__[1] == amount
    post: __return__[1] >= 0 and all(part > 0 for _, part in __return__[0])
    post: all(part <= dict(holders)[bucket] for bucket, part in __return__[0])
    """
    if amount < 0:
        raise ValueError(f"socialize needs amount >= 0, got {amount}")
    payers = [(bucket, equity) for bucket, equity in holders if equity > 0]
    total = sum(equity for _, equity in payers)
    charged = min(amount, total)
    if charged == 0:
        return [], amount
    parts = split_pro_rata(charged, [equity for _, equity in payers])
    charges = [(bucket, part) for (bucket, _), part in zip(payers, parts, strict=True) if part]
    return charges, amount - charged
