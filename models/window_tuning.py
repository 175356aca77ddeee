"""Choose a forecaster's training window on the months before the test period only.

Forecasters tagged ``tunable_window`` (HAR) are walked forward over the ``tune_months``
before the test start once per candidate window (expanding, or the last N days); the window
with the lowest QLIKE is used in the test period. Every target whose window reaches into the
test period is hidden first, so the choice never sees a test outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from features.bars import interval_to_timedelta
from models.calibrated import CalibratedForecaster
from models.errors import ModelsError
from models.evaluation import qlike
from models.splitter import WalkForwardSplitter, target_known

Progress = Callable[[str], None]
WindowFit = Callable[[pd.DataFrame, CalibratedForecaster, WalkForwardSplitter, str], pd.DataFrame]
"""``(panel, forecaster, splitter, name) -> frame with rv and variance`` (a walk-forward)."""


class WindowTuningError(ModelsError, ValueError):
    """No candidate window could be evaluated before the test start."""


def tune_training_windows(
    panel: pd.DataFrame,
    test: WalkForwardSplitter,
    forecasters: Mapping[str, CalibratedForecaster],
    windows: Sequence[int | None],
    tune_months: int,
    walk_forward: WindowFit,
    say: Progress,
) -> dict[str, Any]:
    """The best training window of every ``tunable_window`` forecaster, by QLIKE.

    Parameters
    ----------
    panel
        Features plus targets (:func:`models.targets.attach_targets`).
    test
        The test period's splitter (its horizon, interval and refit schedule are reused).
    forecasters
        Forecasters by name; only those tagged ``tunable_window`` are tuned.
    windows
        Candidate windows in days (``None``: expanding).
    tune_months
        Months before the test start that score the candidates.
    walk_forward
        Runs one walk-forward (:func:`models.walkforward.walk_forward_predict`).
    say
        Progress messages.

    Returns
    -------
    dict
        Per tuned forecaster: ``window`` (``"expanding"`` or days), ``qlike_by_window`` and
        the tuning ``period``.

    Raises
    ------
    WindowTuningError
        If no candidate window of a forecaster could be evaluated.
    """
    out: dict[str, Any] = {}
    tuned = [name for name, f in forecasters.items() if f.get_tag("tunable_window")]
    if not tuned:
        return out
    preceding = test.preceding(tune_months)
    tune = WalkForwardSplitter(
        preceding.test_start,
        preceding.test_end,
        horizon=test.horizon,
        interval=test.interval,
        refit=test.refit,
    )
    start = pd.Timestamp(preceding.test_end)
    step = interval_to_timedelta(test.interval)
    rows = panel.loc[panel["ts"] < start].copy()
    # A target whose window reaches into the test period is test data: hide it from tuning.
    hidden = ~target_known(rows["ts"], start - step, test.horizon, step)
    rows.loc[hidden, ["rv_fwd", "ret_fwd"]] = np.nan
    for name in tuned:
        scores: dict[str, float] = {}
        for days in windows:
            splitter = tune.with_window("expanding" if days is None else "rolling", days)
            try:
                preds = walk_forward(rows, forecasters[name], splitter, name)
            except ValueError as exc:
                say(f"tuning {name}: window {days} skipped ({exc})")
                continue
            loss = qlike(preds["rv"].to_numpy(), preds["variance"].to_numpy())
            scores["expanding" if days is None else str(days)] = float(np.nanmean(loss))
        if not scores:
            raise WindowTuningError(
                f"no training window of {name} could be evaluated before the test start"
            )
        best = min(scores, key=scores.__getitem__)
        say(f"tuning {name}: window {best} (QLIKE {scores[best]:.4f} before the test)")
        out[name] = {
            "window": best,
            "qlike_by_window": scores,
            "period": [tune.describe()["test_start"], tune.describe()["test_end"]],
        }
    return out


def tuned_splitter(
    base: WalkForwardSplitter, tuning: Mapping[str, Any], name: str
) -> WalkForwardSplitter:
    """``base`` with the window chosen for ``name`` (unchanged when it was not tuned)."""
    chosen = tuning.get(name, {}).get("window", "expanding")
    if chosen == "expanding":
        return base
    return base.with_window("rolling", int(chosen))
