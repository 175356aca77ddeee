"""What a forecaster is: target x feature set x estimator x calibration, each part typed.

A :class:`ForecasterSpec` composes four parts that are resolved on their own (the way
``arch_model`` composes a mean, a volatility process and a distribution):

* **target** (:class:`TargetSpec`): what is forecast, and over how many bars;
* **feature set** (:class:`FeatureSetSpec`): a named set of catalog columns, the return
  column taken from the bar interval;
* **estimator** (:data:`EstimatorParams`): typed parameters with a ``kind`` discriminator;
* **calibration** (:class:`CalibrationSpec`): none, split conformal, or adaptive conformal.

:func:`models.factory.build_forecaster` turns a spec into a fitted-to-be
:class:`~models.calibrated.CalibratedForecaster`; no other code maps a name or a kind to a
class. The project's named forecasters (``ewma``, ``ewma_rm``, ``har``, ``harq``, ``garch``,
``gjr``, ``lgbm``) are specs in :data:`NAMED_FORECASTERS`, built with :func:`named_spec`.

Every part is a frozen pydantic model that refuses unknown fields, so a spec is fully
described by its JSON and a typo fails at once.

Examples
--------
>>> spec = named_spec("harq", TargetSpec(horizon=24))
>>> spec.estimator.kind, spec.features.name, spec.calibration.kind
('har', 'har_quarticity', 'adaptive')
>>> named_spec("lgbm", estimator=LGBMParams(n_estimators=50)).estimator.n_estimators
50
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.errors import ModelsError


class SpecError(ModelsError, ValueError):
    """A forecaster specification whose parts do not fit together."""


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# -- target ---------------------------------------------------------------------------------


DEFAULT_HORIZON: Final[int] = 24
"""Bars of the default forecast window: the one default of the horizon.

``pipelines.settings.Settings.horizon_hours`` (the deployed horizon, which names the
registered model) defaults to it, and a :class:`TargetSpec` without a horizon takes it."""

HORIZONS: Final[tuple[int, ...]] = (1, 4, 12, 24, 48)
"""The horizon set of the multi-horizon evaluation (``dynamargin evaluate --horizons``)."""

TargetKind = Literal["variance", "adverse_move"]
Side = Literal["long", "short"]


class TargetSpec(_Part):
    """What is forecast, and over how many bars.

    Attributes
    ----------
    kind
        ``"variance"``: the realized variance of the next ``horizon`` bars,
        ``rv_fwd = sum of squared log returns over (t, t+H]``.
        ``"adverse_move"``: the largest adverse move of a position opened at the close of
        ``t`` and held ``H`` bars, as a loss fraction of notional
        (:func:`models.targets.forward_adverse_move`); its forecast is the ``level``
        quantile.
    horizon
        Bars ``H`` in the forward window.
    side
        ``"long"`` (the adverse move is the drawdown) or ``"short"`` (the run-up);
        ``adverse_move`` only.
    level
        Quantile forecast of an ``adverse_move`` target (0.99: exceeded 1% of the time).
    """

    kind: TargetKind = "variance"
    horizon: int = Field(DEFAULT_HORIZON, ge=1)
    side: Side = "long"
    level: float = Field(0.99, gt=0.5, lt=1.0)

    @property
    def column(self) -> str:
        """Panel column holding the target (:func:`models.targets.attach_targets`)."""
        return "rv_fwd" if self.kind == "variance" else "adverse_fwd"

    @property
    def label(self) -> str:
        """Short name for reports, e.g. ``variance_24h`` or ``adverse_long_24h``."""
        if self.kind == "variance":
            return f"variance_{self.horizon}h"
        return f"adverse_{self.side}_{self.horizon}h"

    def usable(self, values: np.ndarray) -> np.ndarray:
        """Mask of target values a fit may use (a variance must be positive, a move >= 0)."""
        values = np.asarray(values, dtype="float64")
        if self.kind == "variance":
            return np.isfinite(values) & (values > 0)
        return np.isfinite(values) & (values >= 0)


# -- feature set ----------------------------------------------------------------------------

FeatureSetName = Literal["catalog", "returns", "har", "har_quarticity"]

HAR_COLUMNS: Final[tuple[str, str, str]] = ("har_d", "har_w", "har_m")
"""Feature columns of the HAR components (daily, weekly/7, monthly/30 realized variance)."""

QUARTICITY_COLUMN: Final = "rq_24h"
"""Realized quarticity of the last day, the HARQ interaction's input."""


class FeatureSetSpec(_Part):
    """A named set of feature columns.

    Attributes
    ----------
    name
        ``"catalog"``: every feature column of the catalog (the frame's columns other than
        ``ts``, ``asset`` and the targets); ``"returns"``: the bar's log return
        ``ret_<interval>``; ``"har"``: the HAR components ``har_d, har_w, har_m``;
        ``"har_quarticity"``: those plus ``rq_24h``.
    """

    name: FeatureSetName = "catalog"

    def columns(self, interval: str) -> tuple[str, ...] | None:
        """The columns of this set at bar ``interval`` (``None``: the whole catalog)."""
        if self.name == "returns":
            return (f"ret_{interval}",)
        if self.name == "har":
            return HAR_COLUMNS
        if self.name == "har_quarticity":
            return (*HAR_COLUMNS, QUARTICITY_COLUMN)
        return None


# -- estimators -----------------------------------------------------------------------------


class EWMAParams(_Part):
    """RiskMetrics EWMA (:class:`models.estimators.ewma.EWMAForecaster`)."""

    kind: Literal["ewma"] = "ewma"
    lam: float = Field(0.94, gt=0.0, lt=1.0)
    estimate: bool = True
    grid: tuple[float, ...] = (0.94, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995)


class HARParams(_Part):
    """HAR-RV / HARQ on log RV (:class:`models.estimators.har.HARForecaster`)."""

    kind: Literal["har"] = "har"
    quarticity: bool = False
    pooled: bool = False
    bias_correction: Literal["lognormal", "smearing", "none"] = "lognormal"


class GARCHParams(_Part):
    """GARCH(1,1)-t or GJR-GARCH-t (:class:`models.estimators.garch.GARCHForecaster`)."""

    kind: Literal["garch"] = "garch"
    asymmetric: bool = False
    fit_bars: int = Field(17_520, ge=500)


class LGBMParams(_Part):
    """Pooled LightGBM (:class:`models.estimators.gbm.GBMForecaster`); see its parameters."""

    kind: Literal["lgbm"] = "lgbm"
    objective: Literal["qlike", "log_l2", "blend"] = "blend"
    n_estimators: int = Field(400, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(31, ge=2)
    min_child_samples: int = Field(200, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample: float = Field(0.5, gt=0, le=1)
    max_bin: int = Field(63, ge=2)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=0)
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    row_stride: int = Field(2, ge=1)
    asset_code: bool = True
    n_jobs: int = Field(1, ge=1)
    random_state: int = 0


class QuantileLGBMParams(_Part):
    """Pooled LightGBM quantile regression of an adverse move
    (:class:`models.estimators.tail.QuantileGBMForecaster`).

    The quantile level is the target's (:attr:`TargetSpec.level`); the tree parameters
    mean what they mean in :class:`LGBMParams`.
    """

    kind: Literal["lgbm_quantile"] = "lgbm_quantile"
    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    min_child_samples: int = Field(200, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    colsample: float = Field(0.5, gt=0, le=1)
    max_bin: int = Field(63, ge=2)
    reg_lambda: float = Field(1.0, ge=0)
    early_stopping_rounds: int = Field(50, ge=0)
    validation_fraction: float = Field(0.15, gt=0, lt=1)
    row_stride: int = Field(2, ge=1)
    asset_code: bool = True
    n_jobs: int = Field(1, ge=1)
    random_state: int = 0


class ScaledQuantileParams(_Part):
    """Volatility-scaled empirical quantile of an adverse move, the tail baseline
    (:class:`models.estimators.tail.ScaledQuantileForecaster`)."""

    kind: Literal["scaled_quantile"] = "scaled_quantile"
    pooled: bool = False


EstimatorParams = Annotated[
    EWMAParams | HARParams | GARCHParams | LGBMParams | QuantileLGBMParams | ScaledQuantileParams,
    Field(discriminator="kind"),
]
"""The estimator part: one of the typed parameter sets, told apart by ``kind``."""

EstimatorKind = Literal["ewma", "har", "garch", "lgbm", "lgbm_quantile", "scaled_quantile"]

TAIL_KINDS: Final[frozenset[str]] = frozenset({"lgbm_quantile", "scaled_quantile"})
"""Estimator kinds that forecast a quantile of an ``adverse_move`` target; every other kind
forecasts a ``variance`` target."""


# -- calibration ----------------------------------------------------------------------------


class CalibrationSpec(_Part):
    """How a variance forecast becomes VaR, ES and a sigma interval (:mod:`models.conformal`).

    Attributes
    ----------
    kind
        ``"none"`` (sigma only; bounds and VaR/ES stay missing), ``"split"`` (split
        conformal on the forecaster's own out-of-sample scores, recalibrated at every
        refit) or ``"adaptive"`` (split conformal plus adaptive conformal inference moving
        the VaR level between refits from exceptions already known).
    alpha, coverage
        VaR tail probability and sigma-interval coverage.
    window_days
        Rolling window of known out-of-sample scores used at each (re)calibration.
    gamma
        Step of adaptive conformal inference on the VaR level (``adaptive`` only).
        0.0005 was chosen on 2023-07..2024-06, before the public test period, over 0 and
        0.0002 (all ten assets green there).
    min_scores
        Fewest usable scores a calibration accepts (the 1% tail needs a few hundred).
    """

    kind: Literal["none", "split", "adaptive"] = "adaptive"
    alpha: float = Field(0.01, gt=0, lt=0.5)
    coverage: float = Field(0.9, gt=0, lt=1)
    window_days: int = Field(180, ge=1)
    gamma: float = Field(0.0005, ge=0)
    min_scores: int = Field(200, ge=10)


# -- the whole forecaster -------------------------------------------------------------------


class ForecasterSpec(_Part):
    """One forecaster: a name plus its four parts.

    Attributes
    ----------
    name
        Its label in forecast frames and reports (the ``model`` column), e.g. ``"lgbm"``.
    target, features, estimator, calibration
        The four parts.
    """

    name: str = Field(min_length=1)
    target: TargetSpec = Field(default_factory=TargetSpec)
    features: FeatureSetSpec
    estimator: EstimatorParams
    calibration: CalibrationSpec = Field(default_factory=CalibrationSpec)

    @model_validator(mode="after")
    def _parts_fit_together(self) -> ForecasterSpec:
        wants = "adverse_move" if self.estimator.kind in TAIL_KINDS else "variance"
        if self.target.kind != wants:
            raise SpecError(
                f"forecaster {self.name!r}: the {self.estimator.kind} estimator forecasts the "
                f"{wants} target, not {self.target.kind!r}"
            )
        needs = _FEATURES_OF.get(self.estimator.kind)
        if self.estimator.kind == "har":
            needs = ("har_quarticity",) if self.estimator.quarticity else ("har",)
        if needs is not None and self.features.name not in needs:
            raise SpecError(
                f"forecaster {self.name!r}: a {self.estimator.kind} estimator reads the "
                f"{' or '.join(needs)} feature set, not {self.features.name!r}"
            )
        return self


_FEATURES_OF: Final[dict[str, tuple[str, ...]]] = {
    "ewma": ("returns",),
    "garch": ("returns",),
    "scaled_quantile": ("har",),
}
"""Feature sets an estimator family can read (absent: any set, e.g. LightGBM)."""

AnyEstimatorParams = (
    EWMAParams | HARParams | GARCHParams | LGBMParams | QuantileLGBMParams | ScaledQuantileParams
)

NAMED_FORECASTERS: Final[dict[str, tuple[FeatureSetName, AnyEstimatorParams]]] = {
    "ewma": ("returns", EWMAParams(estimate=True)),
    "ewma_rm": ("returns", EWMAParams(estimate=False)),
    "har": ("har", HARParams()),
    "harq": ("har_quarticity", HARParams(quarticity=True)),
    "garch": ("returns", GARCHParams()),
    "gjr": ("returns", GARCHParams(asymmetric=True)),
    "lgbm": ("catalog", LGBMParams()),
    "tail_scaled": ("har", ScaledQuantileParams()),
    "tail_lgbm": ("catalog", QuantileLGBMParams()),
}
"""The project's forecasters by name: feature set and estimator parameters.

``ewma`` chooses its decay on the training rows, ``ewma_rm`` keeps RiskMetrics' 0.94;
``harq`` adds the quarticity interaction; ``gjr`` the leverage term; ``lgbm`` is the
pooled LightGBM challenger. ``tail_scaled`` and ``tail_lgbm`` forecast a quantile of an
``adverse_move`` target: the volatility-scaled empirical quantile (the baseline) and
LightGBM's quantile objective."""


DEFAULT_MODELS: Final[tuple[str, ...]] = ("ewma", "har", "harq", "garch", "gjr", "lgbm")
"""Named forecasters compared by default; ``lgbm`` is the challenger, the rest baselines."""

TAIL_MODELS: Final[tuple[str, ...]] = ("tail_scaled", "tail_lgbm")
"""Named tail forecasters; ``tail_lgbm`` is the challenger, ``tail_scaled`` the baseline."""


def named_spec(
    name: str,
    target: TargetSpec | None = None,
    calibration: CalibrationSpec | None = None,
    estimator: AnyEstimatorParams | None = None,
) -> ForecasterSpec:
    """The spec of a named forecaster, with its target, calibration and estimator overrides.

    Parameters
    ----------
    name
        A key of :data:`NAMED_FORECASTERS`.
    target, calibration
        The target and calibration parts (defaults when ``None``).
    estimator
        Replaces the named estimator parameters; must be of the same ``kind``.

    Raises
    ------
    SpecError
        For an unknown name, or an override of another kind.
    """
    if name not in NAMED_FORECASTERS:
        raise SpecError(
            f"unknown forecaster {name!r}; choose one of {', '.join(NAMED_FORECASTERS)}"
        )
    features, params = NAMED_FORECASTERS[name]
    if estimator is not None:
        if estimator.kind != params.kind:
            raise SpecError(
                f"forecaster {name!r} has a {params.kind} estimator; "
                f"the override is a {estimator.kind}"
            )
        params = estimator
    return ForecasterSpec(
        name=name,
        target=target or TargetSpec(),
        features=FeatureSetSpec(name=features),
        estimator=params,
        calibration=calibration or CalibrationSpec(),
    )
