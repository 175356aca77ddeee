"""Variance forecasts over several horizons: one walk-forward per horizon, DM against HAR.

The horizon is part of the target (:class:`models.spec.TargetSpec`), so a multi-horizon
evaluation is :func:`models.walkforward.run_evaluation` once per horizon on the same
features: each horizon gets its own targets ``RV(t, t+H]``, its own purge of ``H`` bars in
the splitter, its own conformal calibration and a Diebold–Mariano HAC lag of at least
``H - 1``. :func:`horizon_summary` adds, per horizon, the pooled and per-asset comparison
of the primary model with HAR that the review's ``qlike_vs_har_<H>h`` gates read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from models.evaluation import EvaluationError, diebold_mariano, qlike
from models.review import pooled_losses
from models.spec import TargetSpec
from models.walkforward import EvaluationConfig, EvaluationResult, run_evaluation

Progress = Callable[[str], None]

REFERENCE = "har"
"""The baseline every horizon's primary model is compared with (the DM gate's other side)."""


def run_horizons(
    feature_set: Any,
    test_start: str | pd.Timestamp,
    test_end: str | pd.Timestamp,
    horizons: Sequence[int],
    config: EvaluationConfig | None = None,
    progress: Progress | None = None,
) -> dict[int, EvaluationResult]:
    """One walk-forward evaluation per horizon on the same feature set.

    Parameters
    ----------
    feature_set
        A :class:`features.build.FeatureSet` (built once, shared by every horizon).
    test_start, test_end
        Test period, end exclusive (UTC).
    horizons
        Horizons in bars, e.g. :data:`models.spec.HORIZONS`.
    config
        Models and walk-forward settings (the same for every horizon).
    progress
        Called with a short message as work proceeds.
    """
    say = progress or (lambda _msg: None)
    results = {}
    for horizon in horizons:
        results[int(horizon)] = run_evaluation(
            feature_set,
            test_start,
            test_end,
            config,
            target=TargetSpec(horizon=int(horizon)),
            progress=lambda msg, h=horizon: say(f"{h}h: {msg}"),
        )
    return results


def horizon_summary(
    results: dict[int, EvaluationResult], primary: str, reference: str = REFERENCE
) -> dict[str, Any]:
    """Per horizon: mean QLIKE per model, and the primary against ``reference``.

    Returns
    -------
    dict
        ``<H>.mean_qlike.<model>``, ``<H>.pooled.{qlike_challenger, qlike_other,
        dm_statistic, p_worse, p_better, n, hac_lag}`` (pooled hourly cross-asset QLIKE,
        as the review's QLIKE gates) and ``<H>.assets.<SYM>.{qlike_primary,
        qlike_reference, dm_statistic, dm_pvalue}``; keys are strings (JSON).
    """
    from scipy import stats

    out: dict[str, Any] = {}
    for horizon, result in sorted(results.items()):
        forecasts = result.forecasts
        mine = _model_rows(forecasts, primary)
        theirs = _model_rows(forecasts, reference)
        entry: dict[str, Any] = {
            "primary": primary,
            "reference": reference,
            "mean_qlike": dict(result.metrics["mean"]["qlike"]),
            "assets": {},
        }
        pooled = pooled_losses(mine, theirs)
        if len(pooled) > horizon + 1:
            dm = diebold_mariano(pooled["challenger"], pooled["other"], horizon)
            entry["pooled"] = {
                "qlike_challenger": float(pooled["challenger"].mean()),
                "qlike_other": float(pooled["other"].mean()),
                "dm_statistic": dm.statistic,
                "p_worse": float(stats.norm.sf(dm.statistic)),
                "p_better": float(stats.norm.cdf(dm.statistic)),
                "n": float(dm.n),
                "hac_lag": float(dm.lag),
            }
        merged = mine.merge(theirs, on=["ts", "asset"], suffixes=("", "_ref"))
        for asset, block in merged.groupby("asset", sort=True):
            block = block.sort_values("ts")
            a = qlike(block["rv"], block["variance"])
            b = qlike(block["rv"], block["variance_ref"])
            ok = np.isfinite(a) & np.isfinite(b)
            try:
                dm = diebold_mariano(a[ok], b[ok], horizon)
                stat, pvalue = dm.statistic, dm.pvalue
            except EvaluationError:
                stat = pvalue = float("nan")
            entry["assets"][str(asset)] = {
                "qlike_primary": float(np.mean(a[ok])),
                "qlike_reference": float(np.mean(b[ok])),
                "dm_statistic": stat,
                "dm_pvalue": pvalue,
            }
        out[str(horizon)] = entry
    return out


def _model_rows(forecasts: pd.DataFrame, model: str) -> pd.DataFrame:
    rows = forecasts.loc[forecasts["model"] == model, ["ts", "asset", "variance", "rv"]]
    if rows.empty:
        raise EvaluationError(
            f"no forecasts of {model!r}; compare it in the evaluation (--models ...,{model})"
        )
    rows = rows.loc[np.isfinite(rows["rv"]) & (rows["rv"] > 0)]
    return rows.reset_index(drop=True)
