"""The files of a walk-forward evaluation: metrics JSON, forecasts Parquet and PNG figures."""

from __future__ import annotations

import json
from pathlib import Path

from contracts.files import atomic_write, atomic_write_bytes, atomic_write_text
from models.forecast_plots import calibration_figure, forecast_vs_realized_figure, png_bytes
from models.review import FORECAST_COLUMN, REALIZED_COLUMN
from models.walkforward import EvaluationResult


def write_evaluation_report(result: EvaluationResult, directory: Path) -> list[Path]:
    """Write ``metrics.json``, ``forecasts.parquet``, ``calibration.png`` and one
    ``forecast_<ASSET>.png`` per asset into ``directory``.

    The figures are the review report's (:mod:`models.forecast_plots`), so an evaluation and
    a review show a model the same way. The primary model is drawn emphasised.

    Returns
    -------
    list of pathlib.Path
        The files written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    metrics = result.to_json_dict()
    frames = {
        str(model): rows.rename(columns={"variance": FORECAST_COLUMN, "rv": REALIZED_COLUMN})
        for model, rows in result.forecasts.groupby("model", sort=False)
    }
    primary = metrics["config"]["primary"]
    written = [
        atomic_write_text(directory / "metrics.json", json.dumps(metrics, indent=2, default=str)),
        atomic_write(
            directory / "forecasts.parquet",
            lambda tmp: result.forecasts.to_parquet(tmp, index=False),
        ),
        atomic_write_bytes(directory / "calibration.png", png_bytes(calibration_figure(frames))),
    ]
    for asset in metrics["assets"]:
        mine = {label: frame.loc[frame["asset"] == asset] for label, frame in frames.items()}
        figure = forecast_vs_realized_figure(mine, highlight=primary, max_assets=1)
        written.append(atomic_write_bytes(directory / f"forecast_{asset}.png", png_bytes(figure)))
    return written
