"""The margin mechanisms' external inputs for the backtest, from the feature builder.

The crowding overlay (:mod:`serving.mechanisms`) reads open-interest growth and the funding
z-score. Both are catalog features (``oi_growth_7d``, ``funding_z_<month>h``), built point in
time by :func:`features.build.build_features`: the row at ``ts`` is known at the close of bar
``ts``, the instant the forecast made at ``ts`` is published from. An asset without open
interest or a perpetual has NaN there, and the overlay stays inactive (never filled).
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from features.build import build_features
from features.market import MarketData
from serving.policy import PolicyConfig

OI_GROWTH = "oi_growth_7d"
FUNDING_Z_PREFIX = "funding_z_"


def crowding_signals(
    market: MarketData,
    assets: tuple[str, ...],
    index: pd.DatetimeIndex,
    policy: PolicyConfig,
    say: Callable[[str], None],
) -> dict[str, pd.DataFrame] | None:
    """Per asset, ``oi_growth`` and ``funding_z`` on the forecast grid ``index``.

    ``None`` when the policy's crowding overlay is off (nothing is built).
    """
    if not policy.crowding_overlay:
        return None
    say("crowding overlay: building open-interest and funding features")
    frame = build_features(market).frame
    funding = sorted(c for c in frame.columns if c.startswith(FUNDING_Z_PREFIX))
    out: dict[str, pd.DataFrame] = {}
    for asset in assets:
        rows = frame.loc[frame["asset"].astype(str) == asset].set_index("ts")
        table = pd.DataFrame(index=index, dtype="float64")
        table["oi_growth"] = rows[OI_GROWTH].reindex(index) if OI_GROWTH in rows else float("nan")
        table["funding_z"] = rows[funding[0]].reindex(index) if funding else float("nan")
        out[asset] = table
        known = {c: int(table[c].notna().sum()) for c in table.columns}
        say(f"crowding inputs of {asset}: {known} bars known of {len(index)}")
    return out
