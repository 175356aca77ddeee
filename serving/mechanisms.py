"""Margin mechanisms of issue #20 (item 3): options of the one multiplier policy.

Every mechanism is a :class:`serving.policy.PolicyConfig` option, off by default, applied by
:meth:`serving.policy.MultiplierPolicy.target` and :meth:`~serving.policy.MultiplierPolicy.step`
(the code the publisher and the replay share). This module holds their arithmetic, the
point-in-time inputs they read (:class:`PolicySignals`, :func:`rolling_signals`,
:func:`signals_at`) and the named presets of the CLI (:data:`MECHANISMS`).

* **Loss-based IM** (``loss_based_im``): the initial margin fraction is the forecast
  ``1 - loss_probability`` quantile of the adverse move over ``liquidation_horizon_hours``,
  so the forecast probability of a move beyond the margin stays at the target; the
  multiplier is that fraction over ``base_imf``. The quantile is the tail forecast
  (``tail_quantile``, a loss fraction of notional as :func:`models.targets.forward_adverse_move`
  defines it, calibrated at the config's level and liquidation horizon) where one is given;
  otherwise a distributional assumption on the sigma forecast: the log return over the
  liquidation horizon is Student-t with ``loss_tail_dof`` degrees of freedom scaled to std
  ``sigma * sqrt(liquidation_horizon / forecast_horizon)``, and the loss is the short side's
  run-up ``exp(z) - 1`` (the larger of the two sides for the same ``z``).
* **New risk pays at once** (``new_risk_at_once``): a tightening of the target is published
  in the same update, without the ``max_step_up`` limit. The snapshot's ``multiplier`` is,
  by the standard, what *new* risk pays (:func:`liquidation.rules.multiplier.target_multiplier`),
  so new positions pay it from the snapshot's publication; existing positions reach it only
  through the venue's maintenance ramp (``EngineConfig.ramp_ms``) and the replay's
  maintenance rule (``--maintenance-rule stress`` passes it to them only from the stress
  threshold). Relaxation keeps its step and delay limits.
* **Anti-procyclicality** (EU EMIR RTS 153/2013 Art. 28): (a) ``apc_buffer``, a buffer of at
  least 25% on the calculated multiplier, released (the posted target falls back to the
  calculated one) while the forecast stands at ``apc_stress_ratio`` times its reference or
  more; (b) ``apc_stress_weight``, at least 25% weight on stressed observations: the sigma
  the margin uses is ``(1 - w) sigma + w sigma_stress`` with ``sigma_stress`` the
  ``apc_stress_quantile`` quantile of the usable forecasts of the ``apc_stress_window_hours``
  before (point in time); (c) ``apc_floor_window_hours``, a floor at the mapping of the
  long-run sigma (root mean square of the usable forecasts of that window before).
* **Crowding overlay** (``crowding_overlay``): ``max(m, crowding_multiplier)`` while open
  interest grew by at least ``crowding_oi_growth`` (7-day log growth, ``oi_growth_7d``) or
  funding stands at ``|z| >= crowding_funding_z`` (``funding_z_720h``), held at least
  ``crowding_hold_hours`` (>= 12) after the last trigger. A missing input never triggers it
  (an asset without open interest or a perpetual has no overlay), and nothing is filled.

Examples
--------
The unit-variance Student-t 99% quantile lies above the normal's 2.326 (fatter tail):

>>> round(unit_t_quantile(0.99, 4.0), 3), round(unit_t_quantile(0.99, 1e6), 3)
(2.649, 2.326)
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from serving.policy import PolicyConfig

POLICY_VERSION: Final[str] = "2"
"""Version of the policy code; ``1`` is the policy before the mechanisms (bit for bit ``2``
with every mechanism off)."""
_POLICY_MARK: Final[str] = "+policy"

MECHANISMS: Final[dict[str, dict[str, Any]]] = {
    "loss_im": {"loss_based_im": True},
    "new_risk_at_once": {"new_risk_at_once": True},
    "apc_buffer": {"apc_buffer": 0.25},
    "apc_stress_weight": {"apc_stress_weight": 0.25},
    "apc_floor": {"apc_floor_window_hours": 24.0 * 365 * 10},
    "crowding": {"crowding_overlay": True},
}
"""Named mechanisms (``dynamargin backtest --policy-options``) and the config they set."""

SIGNAL_COLUMNS: Final[tuple[str, ...]] = ("tail_quantile", "oi_growth", "funding_z")
"""External inputs of the mechanisms, per forecast ``ts`` (NaN: missing)."""


@dataclass(frozen=True)
class PolicySignals:
    """Point-in-time inputs of the mechanisms for one step (``None``: missing).

    Attributes
    ----------
    tail_quantile
        Forecast adverse-move quantile (loss fraction of notional) at the config's level
        and liquidation horizon, known at the forecast time.
    sigma_stress
        Stressed sigma of the ``apc_stress_window_hours`` before the forecast.
    sigma_long
        Long-run sigma of the ``apc_floor_window_hours`` before the forecast.
    oi_growth
        7-day log growth of open interest known at the forecast time.
    funding_z
        Funding-rate z-score known at the forecast time.
    """

    tail_quantile: float | None = None
    sigma_stress: float | None = None
    sigma_long: float | None = None
    oi_growth: float | None = None
    funding_z: float | None = None

    @classmethod
    def of(cls, **values: Any) -> PolicySignals:
        """Build from raw values: NaN, ``None`` and non-finite values become ``None``."""
        return cls(**{k: _finite(v) for k, v in values.items()})


def with_mechanisms(config: PolicyConfig, names: Iterable[str]) -> PolicyConfig:
    """``config`` with the named mechanisms of :data:`MECHANISMS` switched on.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the known ones).
    """
    updates: dict[str, Any] = {}
    for name in names:
        name = name.strip()
        if not name or name == "default":
            continue
        if name not in MECHANISMS:
            raise ValueError(f"unknown policy option {name!r}; choose from {sorted(MECHANISMS)}")
        updates.update(MECHANISMS[name])
    return type(config).model_validate({**config.model_dump(), **updates})


def policy_variant(config: PolicyConfig) -> str:
    """The mechanisms switched on in ``config``, ``+``-joined in :data:`MECHANISMS` order.

    ``"default"`` when none is; the name the snapshot provenance carries.
    """
    on = []
    for name, settings in MECHANISMS.items():
        key = next(iter(settings))
        value = getattr(config, key)
        if value not in (False, 0.0, None):
            on.append(name)
    return "+".join(on) or "default"


def versioned_provenance(model_version: str, config: PolicyConfig) -> str:
    """``model_version`` of a snapshot, naming the policy that turned the forecast into it.

    The RiskSnapshot standard has no policy field (and v1 consumers parse strictly), so the
    policy rides in ``provenance.model_version``: ``"<version>+policy<POLICY_VERSION>.<variant>"``,
    e.g. ``"7+policy2.default"`` or ``"7+policy2.loss_im+crowding"``; :func:`split_provenance`
    reads it back.

    Examples
    --------
    >>> from serving.policy import PolicyConfig
    >>> versioned_provenance("7", PolicyConfig())
    '7+policy2.default'
    >>> versioned_provenance("7", with_mechanisms(PolicyConfig(), ["apc_buffer"]))
    '7+policy2.apc_buffer'
    """
    return f"{model_version}{_POLICY_MARK}{POLICY_VERSION}.{policy_variant(config)}"


def split_provenance(model_version: str) -> tuple[str, str | None]:
    """The forecast model's version and the policy (``"2.default"``) of a snapshot's
    ``provenance.model_version``; the policy is None for a snapshot that does not name one.

    Examples
    --------
    >>> split_provenance("7+policy2.loss_im+crowding")
    ('7', '2.loss_im+crowding')
    >>> split_provenance("7")
    ('7', None)
    """
    version, mark, policy = model_version.partition(_POLICY_MARK)
    return (version, policy) if mark else (model_version, None)


def needs_history_signals(config: PolicyConfig) -> bool:
    """Whether a mechanism of ``config`` reads the stressed or long-run sigma."""
    return config.apc_stress_weight > 0 or config.apc_floor_window_hours is not None


@lru_cache(maxsize=64)
def unit_t_quantile(level: float, dof: float) -> float:
    """The ``level`` quantile of a Student-t with ``dof`` degrees of freedom and unit std."""
    # Imported here: scipy.stats costs every importer of the policy a noticeable start-up.
    from scipy import stats

    return float(stats.t.ppf(level, dof) * math.sqrt((dof - 2.0) / dof))


def loss_fraction(sigma: float, config: PolicyConfig) -> float:
    """Margin fraction the adverse move exceeds with probability ``loss_probability``.

    The Student-t assumption of the module docstring on the forecast ``sigma``.
    """
    scale = math.sqrt(config.liquidation_horizon_hours / config.forecast_horizon_hours)
    z = unit_t_quantile(1.0 - config.loss_probability, config.loss_tail_dof) * sigma * scale
    return math.expm1(min(z, 700.0))


def loss_multiplier(
    sigma: float, sigma_ref: float, config: PolicyConfig, signals: PolicySignals | None
) -> float:
    """Unclipped loss-based multiplier: the adverse-move quantile over ``base_imf``.

    Monotone non-decreasing in the tail forecast and in ``sigma``. With a stressed weight
    (APC (b)) the quantile is scaled by ``sigma_eff / sigma``.
    """
    effective = effective_sigma(sigma, config, signals)
    tail = signals.tail_quantile if signals is not None else None
    if tail is not None and tail >= 0:
        # A zero quantile stays zero: a stressed sigma near the float max over a tiny sigma
        # makes the scale inf, and 0 * inf is NaN (found by the verification work).
        quantile = tail * (effective / sigma if sigma > 0 else 1.0) if tail > 0 else 0.0
    else:
        quantile = loss_fraction(effective, config)
    return quantile / config.base_imf


def effective_sigma(sigma: float, config: PolicyConfig, signals: PolicySignals | None) -> float:
    """APC (b): ``(1 - w) sigma + w sigma_stress``; ``sigma`` while no stressed sigma exists."""
    w = config.apc_stress_weight
    stress = signals.sigma_stress if signals is not None else None
    if w <= 0 or stress is None:
        return sigma
    return (1.0 - w) * sigma + w * stress


def in_stress(sigma: float, sigma_ref: float, config: PolicyConfig) -> bool:
    """APC (a): the buffer is released while ``sigma / sigma_ref >= apc_stress_ratio``."""
    return sigma >= config.apc_stress_ratio * sigma_ref


def crowding_triggered(signals: PolicySignals | None, config: PolicyConfig) -> bool:
    """Whether open-interest growth or a funding extreme triggers the overlay now.

    A missing input never triggers it.
    """
    if signals is None:
        return False
    oi = signals.oi_growth
    funding = signals.funding_z
    return (oi is not None and oi >= config.crowding_oi_growth) or (
        funding is not None and abs(funding) >= config.crowding_funding_z
    )


def rolling_signals(sigma: pd.Series, config: PolicyConfig) -> pd.DataFrame:
    """The stressed and long-run sigma of every forecast, point in time.

    Like :func:`serving.policy.rolling_sigma_ref`, each value uses only the usable forecasts
    (finite, inside ``[sigma_min, sigma_max]``) *before* the one it serves (``closed="left"``)
    and needs ``sigma_ref_min_obs`` of them (NaN otherwise).

    Parameters
    ----------
    sigma
        Forecast sigma of one asset indexed by forecast ``ts``, increasing.
    config
        The asset's policy config.

    Returns
    -------
    pandas.DataFrame
        Columns ``sigma_stress`` and ``sigma_long`` on ``sigma``'s index (all NaN where the
        mechanism is off).
    """
    usable = sigma.astype("float64")
    usable = usable.where(usable.between(config.sigma_min, config.sigma_max))
    out = pd.DataFrame(index=sigma.index, columns=["sigma_stress", "sigma_long"], dtype="float64")
    if config.apc_stress_weight > 0:
        out["sigma_stress"] = usable.rolling(
            pd.Timedelta(hours=config.apc_stress_window_hours),
            min_periods=config.sigma_ref_min_obs,
            closed="left",
        ).quantile(config.apc_stress_quantile)
    if config.apc_floor_window_hours is not None:
        mean_square = (
            (usable**2)
            .rolling(
                pd.Timedelta(hours=config.apc_floor_window_hours),
                min_periods=config.sigma_ref_min_obs,
                closed="left",
            )
            .mean()
        )
        out["sigma_long"] = np.sqrt(mean_square)
    return out


def signals_at(
    sigma: pd.Series,
    ts: pd.Timestamp,
    config: PolicyConfig,
    extra: Any = None,
) -> PolicySignals | None:
    """The :class:`PolicySignals` of the forecast made at ``ts`` (the publisher's one value).

    The same rule as :func:`rolling_signals`, evaluated on the forecasts before ``ts``; the
    external inputs (:data:`SIGNAL_COLUMNS`) are read from ``extra`` (a forecast row or a
    mapping) where it has them. ``None`` when no mechanism is on (the default policy).
    """
    if not any_mechanism(config):
        return None
    history = pd.Series(dtype="float64")
    if needs_history_signals(config):
        end = pd.Timestamp(ts)
        window = max(config.apc_stress_window_hours, config.apc_floor_window_hours or 0.0)
        start = end - pd.Timedelta(hours=window)
        earlier = sigma[(sigma.index >= start) & (sigma.index < end)]
        probe = pd.concat([earlier, pd.Series([float("nan")], index=pd.DatetimeIndex([end]))])
        history = rolling_signals(probe, config).iloc[-1]
    values = {c: (extra.get(c) if extra is not None else None) for c in SIGNAL_COLUMNS}
    return PolicySignals.of(
        sigma_stress=history.get("sigma_stress"),
        sigma_long=history.get("sigma_long"),
        **values,
    )


def any_mechanism(config: PolicyConfig) -> bool:
    """Whether any mechanism is on (``False``: the default policy, bit for bit)."""
    return policy_variant(config) != "default"


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
