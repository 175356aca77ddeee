"""The margin mechanisms' external inputs for the backtest, from the feature builder.

:func:`policy_signals` gathers what the configured mechanisms read (:mod:`serving.mechanisms`):

* the crowding overlay reads open-interest growth and the funding z-score, catalog features
  (``oi_growth_7d``, ``funding_z_<month>h``) built point in time by
  :func:`features.build.build_features`: the row at ``ts`` is known at the close of bar
  ``ts``, the instant the forecast made at ``ts`` is published from. An asset without open
  interest or a perpetual has NaN there, and the overlay stays inactive (never filled);
* loss-based IM reads the tail forecast: the walk-forward, conformally calibrated
  ``1 - loss_probability`` quantile of the adverse move over the liquidation horizon
  (:func:`models.tails.run_tail_evaluation`, primary model ``tail_lgbm``), the larger of
  the long and short sides. Where it is missing (before the tail walk-forward's first
  calibrated forecast) the policy falls back on its Student-t assumption.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from features.bars import interval_to_timedelta
from features.build import FeatureSet, build_features
from features.market import MarketData
from models.tails import TailConfig, run_tail_evaluation
from pipelines.errors import PipelineError
from serving.policy import PolicyConfig

OI_GROWTH = "oi_growth_7d"
FUNDING_Z_PREFIX = "funding_z_"


def policy_signals(
    market: MarketData,
    assets: tuple[str, ...],
    index: pd.DatetimeIndex,
    policy: PolicyConfig,
    say: Callable[[str], None],
) -> dict[str, pd.DataFrame] | None:
    """Per asset, every external input the policy's mechanisms read, on the grid ``index``.

    ``None`` when no mechanism reads one (the default policy: nothing is built).
    """
    # Both mechanisms read the same feature build: make it once, only if one of them is on.
    features = build_features(market) if policy.crowding_overlay or policy.loss_based_im else None
    parts = [
        crowding_signals(market, assets, index, policy, say, features=features),
        tail_signals(market, assets, index, policy, say, features=features),
    ]
    present = [p for p in parts if p is not None]
    if not present:
        return None
    return {a: pd.concat([p[a] for p in present], axis=1) for a in assets}


def tail_signals(
    market: MarketData,
    assets: tuple[str, ...],
    index: pd.DatetimeIndex,
    policy: PolicyConfig,
    say: Callable[[str], None],
    config: TailConfig | None = None,
    *,
    features: FeatureSet | None = None,
) -> dict[str, pd.DataFrame] | None:
    """Per asset, ``tail_quantile`` on the grid ``index`` (``None`` without loss-based IM).

    Raises
    ------
    PipelineError
        If the liquidation horizon is not a whole number of bars.
    """
    if not policy.loss_based_im:
        return None
    step = interval_to_timedelta(market.interval)
    bars = pd.Timedelta(hours=policy.liquidation_horizon_hours) / step
    if bars < 1 or bars != int(bars):
        raise PipelineError(
            f"liquidation_horizon_hours {policy.liquidation_horizon_hours} is not a whole "
            f"number of {market.interval} bars; the tail forecast needs one"
        )
    cfg = config or TailConfig(level=1.0 - policy.loss_probability, refit="QS")
    say(f"loss-based IM: tail walk-forward ({cfg.primary}, {int(bars)} bars, {cfg.level:.3f})")
    result = run_tail_evaluation(
        features if features is not None else build_features(market),
        index[0],
        index[-1] + step,
        [int(bars)],
        cfg,
        progress=say,
    )
    frame = result.forecasts
    frame = frame.loc[frame["model"] == cfg.primary]
    # The larger of the long and short quantiles: a margin covers either side.
    worst = frame.groupby(["asset", "ts"], observed=True)["quantile"].max()
    out: dict[str, pd.DataFrame] = {}
    for asset in assets:
        known = len(worst) and asset in worst.index.get_level_values("asset")
        values = worst.xs(asset, level="asset") if known else None
        table = pd.DataFrame(index=index, dtype="float64")
        table["tail_quantile"] = float("nan") if values is None else values.reindex(index)
        out[asset] = table
        say(f"tail forecasts of {asset}: {int(table['tail_quantile'].notna().sum())} bars")
    return out


def crowding_signals(
    market: MarketData,
    assets: tuple[str, ...],
    index: pd.DatetimeIndex,
    policy: PolicyConfig,
    say: Callable[[str], None],
    *,
    features: FeatureSet | None = None,
) -> dict[str, pd.DataFrame] | None:
    """Per asset, ``oi_growth`` and ``funding_z`` on the forecast grid ``index``.

    ``None`` when the policy's crowding overlay is off (nothing is built).
    """
    if not policy.crowding_overlay:
        return None
    say("crowding overlay: building open-interest and funding features")
    frame = (features if features is not None else build_features(market)).frame
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
