"""The one factory: a :class:`~models.spec.ForecasterSpec` becomes a calibrated forecaster.

Every forecaster the project fits (walk-forward, final fit, publishing baselines, the
replay's forecasts) is built here. This is the only module that maps an estimator ``kind``
to a class; everything else asks the spec or the forecaster's tags.

Examples
--------
>>> from models.spec import named_spec
>>> forecaster = build_forecaster(named_spec("har"), interval="1h")
>>> type(forecaster.estimator).__name__, forecaster.get_tag("tunable_window")
('HARForecaster', True)
"""

from __future__ import annotations

from features.bars import interval_to_timedelta
from models.calibrated import CalibratedForecaster
from models.estimators.base import VarianceForecaster
from models.spec import (
    EWMAParams,
    ForecasterSpec,
    GARCHParams,
    HARParams,
    LGBMParams,
    QuantileLGBMParams,
    ScaledQuantileParams,
)


def build_forecaster(spec: ForecasterSpec, interval: str) -> CalibratedForecaster:
    """An unfitted :class:`~models.calibrated.CalibratedForecaster` for ``spec``.

    Parameters
    ----------
    spec
        Target, feature set, estimator and calibration.
    interval
        Bar interval of the data it will see (names the return column, sizes the purge).

    Raises
    ------
    ValueError
        If ``interval`` is not a Binance-style interval.
    """
    interval_to_timedelta(interval)  # a bad interval fails here, naming itself
    return CalibratedForecaster(
        estimator=build_estimator(spec, interval),
        calibration=spec.calibration,
        name=spec.name,
    )


def build_estimator(spec: ForecasterSpec, interval: str) -> VarianceForecaster:
    """The bare estimator part of ``spec`` (use :func:`build_forecaster` to forecast)."""
    horizon = spec.target.horizon
    columns = spec.features.columns(interval)
    params = spec.estimator
    if isinstance(params, EWMAParams):
        from models.estimators.ewma import EWMAForecaster

        return EWMAForecaster(
            lam=params.lam,
            horizon=horizon,
            estimate=params.estimate,
            grid=params.grid,
            return_column=_single(columns, spec),
        )
    if isinstance(params, HARParams):
        from models.estimators.har import HARForecaster

        return HARForecaster(
            quarticity=params.quarticity,
            pooled=params.pooled,
            bias_correction=params.bias_correction,
        )
    if isinstance(params, GARCHParams):
        from models.estimators.garch import GARCHForecaster

        return GARCHForecaster(
            asymmetric=params.asymmetric,
            horizon=horizon,
            fit_bars=params.fit_bars,
            return_column=_single(columns, spec),
        )
    if isinstance(params, LGBMParams):
        from models.estimators.gbm import GBMForecaster

        options = params.model_dump(exclude={"kind"})
        return GBMForecaster(horizon=horizon, interval=interval, features=columns, **options)
    if isinstance(params, ScaledQuantileParams):
        from models.estimators.tail import ScaledQuantileForecaster

        return ScaledQuantileForecaster(
            horizon=horizon, interval=interval, level=spec.target.level, pooled=params.pooled
        )
    if isinstance(params, QuantileLGBMParams):
        from models.estimators.tail import QuantileGBMForecaster

        options = params.model_dump(exclude={"kind"})
        return QuantileGBMForecaster(
            level=spec.target.level, horizon=horizon, interval=interval, features=columns, **options
        )
    raise TypeError(f"no estimator for parameters {type(params).__name__}")  # pragma: no cover


def _single(columns: tuple[str, ...] | None, spec: ForecasterSpec) -> str:
    if columns is None or len(columns) != 1:
        raise ValueError(f"forecaster {spec.name!r} needs exactly one return column")
    return columns[0]
