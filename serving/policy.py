"""Turn a volatility forecast into a bounded, rate-limited margin multiplier.

The mapping is ``m* = clip((sigma_fcst / sigma_ref) ** exponent, floor, cap)``; the default
``exponent = 1`` is sigma-proportional, ``exponent > 1`` a convex mapping that tightens more
than proportionally in a volatility spike and releases more in calm markets (still monotone in
sigma, still bounded by ``[floor, cap]``). The published multiplier
then moves towards ``m*`` under four rules, checked in this order:

1. **Operator control.** A halted asset keeps its multiplier (status ``halted``); an active
   override publishes the operator's value, which must lie in ``[floor, cap]``.
2. **Input checks.** A missing, non-finite, future-dated, stale or implausible forecast, or a
   missing reference, triggers the conservative fallback ``max(previous, fallback_multiplier)``
   (never a relaxation), still subject to the step-up limit.
3. **Hysteresis.** If ``|m* - previous| <= hysteresis * previous`` nothing moves, so a forecast
   wobbling around the reference does not make the multiplier flap.
4. **Movement limits.** Tightening moves at most ``max_step_up`` per update; relaxing moves at
   most ``max_step_down`` and only once ``min_relax_delay_hours`` have passed since the last
   change in either direction (relaxing right after a spike is what procyclical margin does).

:meth:`MultiplierPolicy.step` is pure: state in, decision (with the next state) out. The
caller persists the state (see :class:`serving.store.PublicationStore`) so a restarted
publisher continues the rate limits where it stopped.

Example
-------
>>> from datetime import datetime, timezone
>>> policy = MultiplierPolicy(PolicyConfig(sigma_ref=0.03))
>>> now = datetime(2025, 6, 30, 23, tzinfo=timezone.utc)
>>> decision = policy.step(policy.initial_state("BTCUSDT"), 0.045, now, now)
>>> decision.multiplier, decision.reason
(1.5, 'tightened')
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, get_args

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.errors import InvalidInputError, OperatorActionError, PolicyConfigError
from serving.input_validation import normalise_asset, normalise_note, normalise_operator
from serving.mechanisms import (
    PolicySignals,
    crowding_triggered,
    effective_sigma,
    in_stress,
    loss_multiplier,
)

Status = Literal["ok", "fallback", "stale", "halted"]
"""Publication status, as in the RiskSnapshot ``status`` field."""

Reason = Literal[
    "initial",
    "tightened",
    "relaxed",
    "rate_limited_up",
    "rate_limited_down",
    "hysteresis_hold",
    "relax_delay_hold",
    "fallback_missing",
    "fallback_stale",
    "fallback_future",
    "fallback_nonfinite",
    "fallback_out_of_range",
    "fallback_no_reference",
    "halted",
    "override",
]
"""Why the multiplier moved or did not; stored with every publication."""

REASONS: tuple[str, ...] = get_args(Reason)
FALLBACK_REASONS: frozenset[str] = frozenset(r for r in REASONS if r.startswith("fallback_"))

AuditAction = Literal["halt", "resume", "override", "clear_override"]

# A forecast stamped slightly ahead of the publisher's clock is clock skew, not the future.
_CLOCK_SKEW = timedelta(minutes=5)
# Moves smaller than this are float noise (snapshots carry 12 significant digits).
_MIN_MOVE = 1e-9


class PolicyConfig(BaseModel):
    """Per-asset parameters of the multiplier policy.

    Attributes
    ----------
    sigma_ref
        Long-run reference sigma (same units as the forecast: std of the H-ahead log
        return). ``None`` means the trailing-median rule of :func:`rolling_sigma_ref`: the median
        forecast sigma over the ``sigma_ref_window_hours`` before the forecast, with at least
        ``sigma_ref_min_obs`` forecasts.
    floor, cap
        Bounds of the multiplier; ``floor < 1`` releases capital in calm markets.
    exponent
        Shape of the mapping ``(sigma / sigma_ref) ** exponent`` (1: proportional, the
        default; above 1: convex).
    initial_multiplier
        Multiplier of an asset that has never been published.
    max_step_up, max_step_down
        Largest change per update, in multiplier units (asymmetric: tighten fast, relax slow).
    min_relax_delay_hours
        Minimum time since the last change before a relaxation.
    hysteresis
        Relative dead band around the previous multiplier inside which nothing moves.
    expiry_hours
        ``valid_until = published_at + expiry``; consumers must not use an expired value.
    staleness_limit_hours
        A forecast older than this (``now - as_of``) triggers the ``stale`` fallback.
    fallback_multiplier
        Conservative multiplier used when the forecast cannot be trusted.
    fallback_sigma
        Sigma reported when neither a usable forecast nor a reference exists.
    sigma_min, sigma_max
        Plausible forecast range; outside it the forecast is treated as a failure.
    base_imf, base_mmf
        Static initial and maintenance margin fractions that the multiplier scales.
    loss_based_im, loss_probability, liquidation_horizon_hours, forecast_horizon_hours, \
loss_tail_dof
        Loss-based IM (off by default): the multiplier is the forecast ``1 -
        loss_probability`` adverse-move quantile over the liquidation horizon divided by
        ``base_imf`` (:mod:`serving.mechanisms`); ``forecast_horizon_hours`` is the H of the
        sigma forecast and ``loss_tail_dof`` the Student-t assumption used without a tail
        forecast.
    new_risk_at_once
        A tightening is published in the same update, without ``max_step_up`` (new risk
        pays it at once; existing positions follow the venue's maintenance ramp and rule).
    apc_buffer, apc_stress_ratio
        EMIR Art. 28 (a): a buffer (0 or at least 0.25) on the calculated multiplier,
        released while ``sigma >= apc_stress_ratio * sigma_ref``.
    apc_stress_weight, apc_stress_quantile, apc_stress_window_hours
        EMIR Art. 28 (b): weight (0 or at least 0.25) of the stressed sigma, the
        ``apc_stress_quantile`` quantile of the forecasts of the window before.
    apc_floor_window_hours
        EMIR Art. 28 (c): floor at the mapping of the long-run sigma of this window before
        (``None``: off).
    crowding_overlay, crowding_oi_growth, crowding_funding_z, crowding_multiplier, \
crowding_hold_hours
        Crowding overlay: ``max(m, crowding_multiplier)`` for ``crowding_hold_hours`` (at
        least 12) after 7-day open-interest log growth reaches ``crowding_oi_growth`` or the
        funding z-score reaches ``crowding_funding_z`` in absolute value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sigma_ref: float | None = Field(default=None, gt=0)
    sigma_ref_window_hours: float = Field(default=24.0 * 90, gt=0)
    sigma_ref_min_obs: int = Field(default=24 * 7, ge=1)
    floor: float = Field(default=0.8, gt=0)
    cap: float = Field(default=3.0, gt=0)
    exponent: float = Field(default=1.0, gt=0, le=4)
    initial_multiplier: float = 1.0
    max_step_up: float = Field(default=0.5, gt=0)
    max_step_down: float = Field(default=0.05, gt=0)
    min_relax_delay_hours: float = Field(default=6.0, ge=0)
    hysteresis: float = Field(default=0.05, ge=0, lt=1)
    expiry_hours: float = Field(default=2.0, gt=0)
    staleness_limit_hours: float = Field(default=3.0, gt=0)
    fallback_multiplier: float = 1.5
    fallback_sigma: float = Field(default=0.06, gt=0)
    sigma_min: float = Field(default=1e-4, gt=0)
    sigma_max: float = Field(default=1.0, gt=0)
    base_imf: float = Field(default=0.05, gt=0, le=1)
    base_mmf: float = Field(default=0.03, gt=0, le=1)
    # Margin mechanisms of issue #20 (serving/mechanisms.py); every one off by default.
    loss_based_im: bool = False
    loss_probability: float = Field(default=0.01, gt=0, lt=0.5)
    liquidation_horizon_hours: float = Field(default=24.0, gt=0)
    forecast_horizon_hours: float = Field(default=24.0, gt=0)
    loss_tail_dof: float = Field(default=4.0, gt=2)
    new_risk_at_once: bool = False
    apc_buffer: float = Field(default=0.0, ge=0, le=1)
    apc_stress_ratio: float = Field(default=1.5, gt=1)
    apc_stress_weight: float = Field(default=0.0, ge=0, le=1)
    apc_stress_quantile: float = Field(default=0.95, gt=0.5, lt=1)
    apc_stress_window_hours: float = Field(default=24.0 * 365 * 2, gt=0)
    apc_floor_window_hours: float | None = Field(default=None, gt=0)
    crowding_overlay: bool = False
    crowding_oi_growth: float = Field(default=0.15, gt=0)
    crowding_funding_z: float = Field(default=3.0, gt=0)
    crowding_multiplier: float = Field(default=1.5, gt=0)
    crowding_hold_hours: float = Field(default=12.0, ge=12)

    @model_validator(mode="after")
    def _consistent(self) -> PolicyConfig:
        problems = []
        if not self.floor < self.cap:
            problems.append(f"floor ({self.floor}) must be below cap ({self.cap})")
        for name in ("initial_multiplier", "fallback_multiplier"):
            value = getattr(self, name)
            if not self.floor <= value <= self.cap:
                problems.append(f"{name} ({value}) must lie in [floor, cap]")
        if not self.sigma_min < self.sigma_max:
            problems.append(f"sigma_min ({self.sigma_min}) must be below sigma_max")
        if self.base_mmf > self.base_imf:
            problems.append(f"base_mmf ({self.base_mmf}) must not exceed base_imf")
        if self.base_imf * self.cap > 1:
            problems.append(f"base_imf * cap ({self.base_imf * self.cap}) exceeds 100% margin")
        for name in ("apc_buffer", "apc_stress_weight"):
            value = getattr(self, name)
            if 0 < value < 0.25:
                problems.append(f"{name} ({value}) must be 0 (off) or >= 0.25 (EMIR Art. 28)")
        if self.crowding_overlay and not self.floor <= self.crowding_multiplier <= self.cap:
            value = self.crowding_multiplier
            problems.append(f"crowding_multiplier ({value}) must lie in [floor, cap]")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def expiry(self) -> timedelta:
        return timedelta(hours=self.expiry_hours)

    @property
    def staleness_limit(self) -> timedelta:
        return timedelta(hours=self.staleness_limit_hours)

    @property
    def min_relax_delay(self) -> timedelta:
        return timedelta(hours=self.min_relax_delay_hours)


@dataclass(frozen=True)
class PolicyBook:
    """Policy configs for every asset: a default plus per-asset overrides.

    Attributes
    ----------
    default
        Applies to assets without their own entry.
    assets
        Fully resolved configs of the assets named in the TOML file.
    """

    default: PolicyConfig
    assets: dict[str, PolicyConfig]

    def for_asset(self, asset: str) -> PolicyConfig:
        """Return the config of ``asset`` (the default if it has none)."""
        return self.assets.get(asset, self.default)

    def policy(self, asset: str) -> MultiplierPolicy:
        """Return the :class:`MultiplierPolicy` of ``asset``."""
        return MultiplierPolicy(self.for_asset(asset))

    @classmethod
    def uniform(cls, config: PolicyConfig | None = None) -> PolicyBook:
        """One config for every asset."""
        return cls(default=config or PolicyConfig(), assets={})


POLICY_CONFIG_ENV = "DYNAMARGIN_CONFIG"


def policy_config_path(
    workdir: Path, explicit: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path | None:
    """The TOML file holding the ``[policy]`` section, resolved the same for every command.

    ``explicit`` (a ``--config`` option), else ``$DYNAMARGIN_CONFIG``, else
    ``<workdir>/dynamargin.toml`` if it exists, else ``None`` (the defaults).
    """
    if explicit is not None:
        return Path(explicit)
    env = (os.environ if environ is None else environ).get(POLICY_CONFIG_ENV)
    if env:
        return Path(env)
    default = Path(workdir) / "dynamargin.toml"
    return default if default.exists() else None


def load_policy_book(path: Path | None) -> PolicyBook:
    """Read the ``[policy]`` section of a TOML file.

    The layout is::

        [policy]                  # defaults for every asset
        floor = 0.8
        cap = 3.0
        [policy.assets.BTCUSDT]   # overrides for one asset
        sigma_ref = 0.028

    Parameters
    ----------
    path
        TOML file; ``None`` or a file without ``[policy]`` gives the defaults.

    Returns
    -------
    PolicyBook

    Raises
    ------
    PolicyConfigError
        If the file cannot be parsed or a value is invalid; the message names the file and
        the asset.
    """
    if path is None:
        return PolicyBook.uniform()
    try:
        document = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise PolicyConfigError(f"cannot read policy config {path}: {exc}") from exc
    section: dict[str, Any] = dict(document.get("policy", {}))
    per_asset: dict[str, Any] = section.pop("assets", {})
    default = _build_config(section, path, "[policy]")
    assets: dict[str, PolicyConfig] = {}
    for asset, overrides in per_asset.items():
        where = f"[policy.assets.{asset}]"
        try:
            canonical = normalise_asset(asset)
        except InvalidInputError as exc:
            raise PolicyConfigError(f"invalid policy config in {path} {where}: {exc}") from exc
        if canonical in assets:
            raise PolicyConfigError(
                f"policy config {path} configures {canonical} twice ({where}); keep one"
            )
        assets[canonical] = _build_config({**default.model_dump(), **overrides}, path, where)
    return PolicyBook(default=default, assets=assets)


def _build_config(values: dict[str, Any], path: Path, where: str) -> PolicyConfig:
    try:
        return PolicyConfig(**values)
    except (ValidationError, TypeError) as exc:
        raise PolicyConfigError(f"invalid policy config in {path} {where}: {exc}") from exc


@dataclass(frozen=True)
class PolicyState:
    """What the policy remembers about one asset between updates.

    Attributes
    ----------
    asset
        Asset symbol.
    multiplier
        Last published multiplier.
    updated_at
        Time of the last step (``None`` before the first publication).
    last_tighten_at, last_relax_at
        Times of the last increase and decrease (drive the relaxation delay).
    halted, halt_note
        Operator halt flag and its note.
    override_multiplier, override_until
        Active operator override and its end (``None``: until cleared).
    crowding_until
        End of the crowding overlay's hold (``None``: not held; omitted from
        :meth:`to_dict` then, so a default policy's stored state is unchanged).
    """

    asset: str
    multiplier: float
    updated_at: datetime | None = None
    last_tighten_at: datetime | None = None
    last_relax_at: datetime | None = None
    halted: bool = False
    halt_note: str | None = None
    override_multiplier: float | None = None
    override_until: datetime | None = None
    crowding_until: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (ISO-8601 times) for the store."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in _OPTIONAL_STATE and value is None:
                continue
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyState:
        """Inverse of :meth:`to_dict`."""
        times = {
            "updated_at", "last_tighten_at", "last_relax_at", "override_until", "crowding_until"
        }  # fmt: skip
        values = {
            key: (datetime.fromisoformat(value) if key in times and value else value)
            for key, value in data.items()
        }
        return cls(**values)


_OPTIONAL_STATE = frozenset({"crowding_until"})
"""State fields of the mechanisms, stored only when set."""


@dataclass(frozen=True)
class PolicyDecision:
    """Outcome of one policy step.

    Attributes
    ----------
    asset
        Asset symbol.
    multiplier
        Multiplier to publish, always in ``[floor, cap]``.
    previous
        Multiplier before this step.
    status
        Snapshot status: ``ok``, ``fallback``, ``stale`` or ``halted``.
    reason
        Why the multiplier moved or held (:data:`Reason`).
    valid_until
        Expiry of the published value.
    target
        Target ``clip((sigma / sigma_ref) ** exponent, floor, cap)``; ``None`` on fallback.
    sigma_ref
        Reference sigma used, if any.
    state
        The state to persist for the next step.
    """

    asset: str
    multiplier: float
    previous: float
    status: Status
    reason: Reason
    valid_until: datetime
    target: float | None
    sigma_ref: float | None
    state: PolicyState


@dataclass(frozen=True)
class AuditRecord:
    """One operator action, stored in the audit table.

    Attributes
    ----------
    asset, action, operator, note, at
        Who did what to which asset, when and why.
    multiplier_before
        Multiplier in force before the action.
    override_multiplier, override_until
        Override value and end, for ``override`` actions.
    """

    asset: str
    action: AuditAction
    operator: str
    note: str
    at: datetime
    multiplier_before: float
    override_multiplier: float | None = None
    override_until: datetime | None = None


class MultiplierPolicy:
    """Forecast sigma -> margin multiplier for one asset (see the module docstring).

    Parameters
    ----------
    config
        The asset's :class:`PolicyConfig`.
    """

    def __init__(self, config: PolicyConfig) -> None:
        self.config = config

    def initial_state(self, asset: str) -> PolicyState:
        """State of an asset that has never been published."""
        return PolicyState(asset=asset, multiplier=self.config.initial_multiplier)

    def target(
        self,
        sigma: float,
        sigma_ref: float,
        signals: PolicySignals | None = None,
        crowded: bool = False,
    ) -> float:
        """``clip((sigma / sigma_ref) ** exponent, floor, cap)`` and the mechanisms.

        With every mechanism off (the default) exactly that. Otherwise, in this order
        (:mod:`serving.mechanisms`): the mapping of the APC-(b) weighted sigma, or the
        loss-based multiplier; the APC-(c) long-run floor; the APC-(a) buffer unless in
        stress; the crowding overlay ``max(m, crowding_multiplier)`` while ``crowded``; and
        the clip to ``[floor, cap]``.
        """
        cfg = self.config
        if cfg.loss_based_im:
            value = loss_multiplier(sigma, sigma_ref, cfg, signals)
        else:
            value = self._ratio(effective_sigma(sigma, cfg, signals), sigma_ref)
        long_run = signals.sigma_long if signals is not None else None
        if cfg.apc_floor_window_hours is not None and long_run is not None:
            floor = (
                loss_multiplier(long_run, sigma_ref, cfg, None)
                if cfg.loss_based_im
                else self._ratio(long_run, sigma_ref)
            )
            value = max(value, floor)
        if cfg.apc_buffer > 0 and not in_stress(sigma, sigma_ref, cfg):
            value = value * (1.0 + cfg.apc_buffer)
        if crowded:
            value = max(value, cfg.crowding_multiplier)
        return min(max(value, cfg.floor), cfg.cap)

    def _ratio(self, sigma: float, sigma_ref: float) -> float:
        try:
            return float((sigma / sigma_ref) ** self.config.exponent)
        except OverflowError:
            # A finite ratio whose power overflows is far above any cap (found by the
            # verification work: exponent > 1 with a tiny sigma_ref).
            return math.inf

    def step(
        self,
        state: PolicyState,
        forecast_sigma: float | None,
        as_of: datetime | None,
        now: datetime,
        sigma_ref: float | None = None,
        signals: PolicySignals | None = None,
    ) -> PolicyDecision:
        """Decide the next multiplier.

        Parameters
        ----------
        state
            Current state of the asset.
        forecast_sigma
            Forecast std of the H-ahead log return; ``None`` when no forecast exists.
        as_of
            Data time of the forecast (``None`` when missing).
        now
            Publication time (tz-aware).
        sigma_ref
            Reference sigma for this step (e.g. the trailing median); overrides
            ``config.sigma_ref`` when given.
        signals
            Point-in-time inputs of the mechanisms (tail forecast, stressed and long-run
            sigma, open interest, funding); ignored by the default policy.

        Returns
        -------
        PolicyDecision
            The multiplier, why, and the next state.

        Notes
        -----
        The contract below (PEP 316) is checked by CrossHair and by a z3 proof of the same
        code, and at run time in the tests (``tests/verification``). ``previous`` is the
        stored multiplier clipped to ``[floor, cap]``; a move of at most ``_MIN_MOVE`` is float
        noise, as for the hysteresis band.

        pre: math.isfinite(state.multiplier)
        pre: state.override_multiplier is None or math.isfinite(state.override_multiplier)
        pre: now.tzinfo is not None
        post: self.config.floor <= __return__.multiplier <= self.config.cap
        post: __return__.reason == "override" or self.config.new_risk_at_once or __return__.multiplier <= _previous(state, self.config) + self.config.max_step_up + _MIN_MOVE
        post: __return__.reason == "override" or __return__.multiplier >= _previous(state, self.config) - self.config.max_step_down - _MIN_MOVE
        post: __return__.reason == "override" or not _in_relax_delay(state, now, self.config) or __return__.multiplier >= _previous(state, self.config)
        post: __return__.reason not in FALLBACK_REASONS or __return__.multiplier >= _previous(state, self.config)
        post: __return__.target is None or not _in_hysteresis_band(__return__.target, _previous(state, self.config), self.config) or __return__.multiplier == _previous(state, self.config)
        """  # noqa: E501 (one contract, one line: PEP 316 reads them line by line)
        cfg = self.config
        previous = _previous(state, cfg)
        reference = sigma_ref if sigma_ref is not None else cfg.sigma_ref
        valid_until = now + cfg.expiry

        def decide(
            multiplier: float,
            status: Status,
            reason: Reason,
            target: float | None,
            nxt: PolicyState,
        ) -> PolicyDecision:
            multiplier = min(max(multiplier, cfg.floor), cfg.cap)
            nxt = _record_move(nxt, previous, multiplier, now)
            return PolicyDecision(
                asset=state.asset,
                multiplier=multiplier,
                previous=state.multiplier,
                status=status,
                reason=reason,
                valid_until=valid_until,
                target=target,
                sigma_ref=reference,
                state=nxt,
            )

        if state.halted:
            return decide(previous, "halted", "halted", None, state)
        if state.override_multiplier is not None:
            if state.override_until is None or now < state.override_until:
                return decide(state.override_multiplier, "ok", "override", None, state)
            state = replace(state, override_multiplier=None, override_until=None)

        def fall_back(reason: Reason) -> PolicyDecision:
            # Never relax on bad input; tighten towards the fallback within the step limit.
            wanted = max(previous, cfg.fallback_multiplier)
            status: Status = "stale" if reason == "fallback_stale" else "fallback"
            return decide(min(wanted, previous + cfg.max_step_up), status, reason, None, state)

        failure = self.check_input(forecast_sigma, as_of, now, reference)
        if failure is not None:
            return fall_back(failure)

        assert forecast_sigma is not None and reference is not None  # checked just above
        crowded = False
        if cfg.crowding_overlay:
            # Only a usable (fresh) forecast's signals trigger or extend the hold.
            if crowding_triggered(signals, cfg):
                until = now + timedelta(hours=cfg.crowding_hold_hours)
                if state.crowding_until is None or until > state.crowding_until:
                    state = replace(state, crowding_until=until)
            crowded = state.crowding_until is not None and now < state.crowding_until
        if signals is None and not crowded:
            target = self.target(forecast_sigma, reference)  # the default policy's call
        else:
            target = self.target(forecast_sigma, reference, signals, crowded)
        if math.isnan(target):
            # Mechanism inputs that combine to no number (inf - inf, 0 * inf) are bad input.
            return fall_back("fallback_nonfinite")
        if _in_hysteresis_band(target, previous, cfg):
            return decide(previous, "ok", "hysteresis_hold", target, state)
        if target > previous:
            # New risk pays at once: the tightening skips the step limit (module
            # serving.mechanisms); existing positions follow the venue's ramp.
            if target - previous > cfg.max_step_up and not cfg.new_risk_at_once:
                return decide(previous + cfg.max_step_up, "ok", "rate_limited_up", target, state)
            return decide(target, "ok", "tightened", target, state)
        if _in_relax_delay(state, now, cfg):
            return decide(previous, "ok", "relax_delay_hold", target, state)
        if previous - target > cfg.max_step_down:
            return decide(previous - cfg.max_step_down, "ok", "rate_limited_down", target, state)
        return decide(target, "ok", "relaxed", target, state)

    def check_input(
        self,
        sigma: float | None,
        as_of: datetime | None,
        now: datetime,
        reference: float | None,
    ) -> Reason | None:
        """Return the fallback reason for an unusable forecast, or ``None`` if usable."""
        cfg = self.config
        if sigma is None or as_of is None or pd.isna(as_of):
            return "fallback_missing"
        if not math.isfinite(sigma):
            return "fallback_nonfinite"
        if as_of > now + _CLOCK_SKEW:
            return "fallback_future"
        if now - as_of > cfg.staleness_limit:
            return "fallback_stale"
        if not cfg.sigma_min <= sigma <= cfg.sigma_max:
            return "fallback_out_of_range"
        if reference is None or not math.isfinite(reference) or reference <= 0:
            return "fallback_no_reference"
        return None

    # -- operator control -------------------------------------------------------------

    def halt(
        self, state: PolicyState, operator: str, note: str, now: datetime
    ) -> tuple[PolicyState, AuditRecord]:
        """Freeze the asset's multiplier; snapshots carry status ``halted`` until resumed."""
        operator, note = _require_operator(operator, note, state.asset)
        record = AuditRecord(state.asset, "halt", operator, note, now, state.multiplier)
        return replace(state, halted=True, halt_note=note), record

    def resume(
        self, state: PolicyState, operator: str, note: str, now: datetime
    ) -> tuple[PolicyState, AuditRecord]:
        """Lift a halt; the next step applies the normal rules from the frozen value."""
        operator, note = _require_operator(operator, note, state.asset)
        if not state.halted:
            raise OperatorActionError(f"{state.asset} is not halted; nothing to resume")
        record = AuditRecord(state.asset, "resume", operator, note, now, state.multiplier)
        return replace(state, halted=False, halt_note=None), record

    def override(
        self,
        state: PolicyState,
        multiplier: float,
        until: datetime | None,
        operator: str,
        note: str,
        now: datetime,
    ) -> tuple[PolicyState, AuditRecord]:
        """Force a multiplier (within ``[floor, cap]``) until ``until`` or until cleared.

        Raises
        ------
        OperatorActionError
            If the value is outside ``[floor, cap]`` or ``until`` is not in the future.
        """
        operator, note = _require_operator(operator, note, state.asset)
        cfg = self.config
        if not (math.isfinite(multiplier) and cfg.floor <= multiplier <= cfg.cap):
            raise OperatorActionError(
                f"override {multiplier} for {state.asset} is outside [floor={cfg.floor}, "
                f"cap={cfg.cap}]; raise the cap in the policy config first if this is intended"
            )
        if until is not None and until <= now:
            raise OperatorActionError(
                f"override for {state.asset} ends at {until.isoformat()}, not after now "
                f"({now.isoformat()}); give a future end time"
            )
        record = AuditRecord(
            state.asset, "override", operator, note, now, state.multiplier, multiplier, until
        )
        return replace(state, override_multiplier=multiplier, override_until=until), record

    def clear_override(
        self, state: PolicyState, operator: str, note: str, now: datetime
    ) -> tuple[PolicyState, AuditRecord]:
        """End an override; the policy resumes from the overridden value under its limits."""
        operator, note = _require_operator(operator, note, state.asset)
        if state.override_multiplier is None:
            raise OperatorActionError(f"{state.asset} has no active override to clear")
        record = AuditRecord(state.asset, "clear_override", operator, note, now, state.multiplier)
        return replace(state, override_multiplier=None, override_until=None), record


def rolling_sigma_ref(sigma: pd.Series, config: PolicyConfig) -> pd.Series:
    """The reference sigma of every forecast: the one rule of publisher and replay.

    The reference of the forecast made at ``ts`` is the median of the usable forecasts
    (finite, inside ``[sigma_min, sigma_max]``) with a time in ``[ts - window, ts)``: it
    uses only forecasts known *before* the one it normalises, so it is point-in-time, and the
    forecast being judged never moves its own yardstick (including it would pull the median
    towards a spike and damp the very signal the multiplier should carry). A fixed
    ``config.sigma_ref`` replaces the rule. NaN where fewer than ``sigma_ref_min_obs``
    forecasts exist.

    Parameters
    ----------
    sigma
        Forecast sigma of one asset indexed by forecast ``ts``, increasing (NaN: missing).
    config
        Supplies the window, the minimum number of observations and the plausible range.

    Returns
    -------
    pandas.Series
        The reference on ``sigma``'s index.
    """
    if config.sigma_ref is not None:
        return pd.Series(config.sigma_ref, index=sigma.index, dtype="float64")
    usable = sigma.astype("float64")
    usable = usable.where(usable.between(config.sigma_min, config.sigma_max))
    return usable.rolling(
        pd.Timedelta(hours=config.sigma_ref_window_hours),
        min_periods=config.sigma_ref_min_obs,
        closed="left",
    ).median()


def sigma_ref_at(
    sigma: pd.Series, ts: datetime | pd.Timestamp, config: PolicyConfig
) -> float | None:
    """:func:`rolling_sigma_ref` of the forecast made at ``ts`` (the publisher's one value).

    Evaluates the same rolling rule on the forecasts of the window only, so a publisher
    holding years of history pays for one window, not for the whole series.

    Parameters
    ----------
    sigma
        Forecast sigma of one asset indexed by forecast ``ts``, increasing.
    ts
        Time of the forecast being published; later forecasts are ignored.
    config
        The asset's policy config.

    Returns
    -------
    float or None
        ``None`` where the rule gives no reference (too few forecasts).
    """
    if config.sigma_ref is not None:
        return config.sigma_ref
    end = pd.Timestamp(ts)
    start = end - pd.Timedelta(hours=config.sigma_ref_window_hours)
    window = sigma[(sigma.index >= start) & (sigma.index < end)]
    # The value at `end` itself is excluded by the rule, so any stand-in works there.
    probe = pd.concat([window, pd.Series([float("nan")], index=pd.DatetimeIndex([end]))])
    value = rolling_sigma_ref(probe, config).iloc[-1]
    return None if pd.isna(value) else float(value)


def _record_move(state: PolicyState, previous: float, new: float, now: datetime) -> PolicyState:
    changes: dict[str, Any] = {"multiplier": new, "updated_at": now}
    if new > previous:
        changes["last_tighten_at"] = now
    elif new < previous:
        changes["last_relax_at"] = now
    return replace(state, **changes)


def _previous(state: PolicyState, cfg: PolicyConfig) -> float:
    """The stored multiplier clipped to ``[floor, cap]`` (the config may have changed)."""
    return min(max(state.multiplier, cfg.floor), cfg.cap)


def _in_hysteresis_band(target: float, previous: float, cfg: PolicyConfig) -> bool:
    """True if ``target`` lies in the dead band around ``previous`` (nothing moves)."""
    return abs(target - previous) <= cfg.hysteresis * previous + _MIN_MOVE


def _in_relax_delay(state: PolicyState, now: datetime, cfg: PolicyConfig) -> bool:
    """True if the last change, either way, is less than ``min_relax_delay`` before ``now``."""
    last_change = _latest(state.last_tighten_at, state.last_relax_at)
    return last_change is not None and now - last_change < cfg.min_relax_delay


def _latest(*times: datetime | None) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present) if present else None


def _require_operator(operator: str, note: str, asset: str) -> tuple[str, str]:
    """The operator name and note as audited (see :mod:`serving.input_validation`)."""
    try:
        return normalise_operator(operator), normalise_note(note)
    except InvalidInputError as exc:
        raise OperatorActionError(f"operator action on {asset}: {exc} (it is audited)") from exc
