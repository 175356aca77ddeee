"""Replay the multiplier policy over a forecast history and summarise its behaviour.

For each asset the policy steps through every forecast in time order, publishing at
``ts + publish_lag`` (a forecast made at the close of bar ``ts`` is available then). The
report gives:

* **changes per week**: updates whose multiplier differs from the previous one;
* **time at floor / at cap**: share of updates with the multiplier on a bound;
* **lead time** before the largest realized-volatility spikes. Spikes are the ``top_spikes``
  largest values of realized vol, at least ``spike_separation_hours`` apart. A spike's
  window starts where its realized-vol window starts (``ts - H`` for a trailing
  ``realized_vol`` column, ``ts`` for a forward ``rv_fwd`` variance). With ``m0`` the
  multiplier ``lookback_hours`` before the window start, ``t_rise`` is the first time in
  ``(window_start - lookback, peak]`` the multiplier reaches ``m0 * (1 + rise_threshold)``
  and the lead time is ``window_start - t_rise``: positive means the multiplier was already
  up before the violent window began, negative that it reacted during it, ``None`` that it
  never rose that far (a threshold, so that routine small moves do not count as a rise).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from contracts.errors import ForecastContractError
from contracts.forecast import ProvenanceInfo, validate_forecasts
from serving.mechanisms import SIGNAL_COLUMNS, PolicySignals, any_mechanism, rolling_signals
from serving.policy import MultiplierPolicy, PolicyBook, PolicyDecision, rolling_sigma_ref
from serving.publishing import decision_snapshot


@dataclass(frozen=True)
class SpikeLead:
    """Lead time of the multiplier before one realized-volatility spike."""

    peak_ts: pd.Timestamp
    window_start: pd.Timestamp
    realized_vol: float
    lead_hours: float | None
    multiplier_before: float
    multiplier_at_peak: float


@dataclass(frozen=True)
class AssetReplay:
    """Replay summary of one asset."""

    asset: str
    updates: int
    weeks: float
    changes: int
    changes_per_week: float
    time_at_floor: float
    time_at_cap: float
    fallback_share: float
    mean_multiplier: float
    spikes: list[SpikeLead] = field(default_factory=list)

    @property
    def spikes_led(self) -> int:
        """Spikes before whose violent window the multiplier had already risen."""
        return sum(1 for s in self.spikes if s.lead_hours is not None and s.lead_hours > 0)

    def summary_row(self) -> dict[str, Any]:
        """:meth:`to_dict` with the spikes counted (``spikes``, ``led``) instead of listed."""
        row = {k: v for k, v in self.to_dict().items() if k != "spikes"}
        return {**row, "spikes": len(self.spikes), "led": self.spikes_led}

    @property
    def median_lead_hours(self) -> float | None:
        """Median lead time over spikes where the multiplier rose (``None`` if none did)."""
        leads = [s.lead_hours for s in self.spikes if s.lead_hours is not None]
        return float(np.median(leads)) if leads else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "asset": self.asset,
            "updates": self.updates,
            "weeks": round(self.weeks, 3),
            "changes": self.changes,
            "changes_per_week": round(self.changes_per_week, 3),
            "time_at_floor": round(self.time_at_floor, 4),
            "time_at_cap": round(self.time_at_cap, 4),
            "fallback_share": round(self.fallback_share, 4),
            "mean_multiplier": round(self.mean_multiplier, 4),
            "median_lead_hours": self.median_lead_hours,
            "spikes": [
                {
                    "peak_ts": s.peak_ts.isoformat(),
                    "window_start": s.window_start.isoformat(),
                    "realized_vol": round(s.realized_vol, 6),
                    "lead_hours": s.lead_hours,
                    "multiplier_before": _rounded(s.multiplier_before),
                    "multiplier_at_peak": _rounded(s.multiplier_at_peak),
                }
                for s in self.spikes
            ],
        }


@dataclass(frozen=True)
class ReplayReport:
    """Per-asset summaries and the full multiplier paths."""

    assets: dict[str, AssetReplay]
    paths: pd.DataFrame


def replay_policy(
    forecasts: pd.DataFrame,
    book: PolicyBook,
    *,
    horizon_hours: int = 24,
    publish_lag: timedelta = timedelta(hours=1),
    top_spikes: int = 5,
    spike_separation_hours: float = 24.0 * 7,
    lookback_hours: float = 72.0,
    rise_threshold: float = 0.1,
    report_start: datetime | pd.Timestamp | None = None,
) -> ReplayReport:
    """Replay the policy over a forecast history.

    Parameters
    ----------
    forecasts
        Forecast-contract frame; an optional ``realized_vol`` (std of the log return over
        ``(ts - H, ts]``) or ``rv_fwd`` (variance over ``(ts, ts + H]``) column enables
        lead times.
    book
        Policy configs per asset.
    horizon_hours
        H of the realized-vol columns.
    publish_lag
        Delay between a forecast's ``ts`` and its publication.
    top_spikes, spike_separation_hours, lookback_hours
        Spike selection and the window searched for the multiplier's rise.
    rise_threshold
        Relative rise over the pre-window level that counts as "the multiplier rose".
    report_start
        Summarise only from this time; earlier forecasts warm the policy and the
        trailing reference up (e.g. the test period after its training history).

    Returns
    -------
    ReplayReport
    """
    frame = validate_forecasts(forecasts, source="replay forecasts")
    summaries: dict[str, AssetReplay] = {}
    paths = []
    for asset, group in frame.groupby("asset", sort=True):
        policy = book.policy(str(asset))
        path = policy_path(policy, str(asset), group.set_index("ts")["sigma"], publish_lag)
        realized, window_start = _realized(group.set_index("ts"), horizon_hours)
        if report_start is not None:
            begin = pd.Timestamp(report_start)
            path = path[path["ts"] >= begin].reset_index(drop=True)
            if realized is not None:
                realized = realized[realized.index >= begin]
        paths.append(path)
        spikes = (
            _spike_leads(
                path,
                realized,
                window_start,
                top_spikes,
                spike_separation_hours,
                lookback_hours,
                rise_threshold,
            )
            if realized is not None
            else []
        )
        summaries[str(asset)] = _summarise(str(asset), path, policy, spikes)
    all_paths = pd.concat(paths, ignore_index=True) if paths else pd.DataFrame()
    return ReplayReport(summaries, all_paths)


def policy_decisions(
    policy: MultiplierPolicy,
    asset: str,
    sigma: pd.Series,
    publish_lag: timedelta,
    *,
    signals: pd.DataFrame | None = None,
) -> Iterator[tuple[pd.Timestamp, datetime, PolicyDecision]]:
    """Step the policy through one asset's forecasts in time order: the one replay loop.

    The forecast made at the close of bar ``ts`` is published at ``ts + publish_lag`` with
    the reference of :func:`serving.policy.rolling_sigma_ref`, the publisher's rule. A
    missing (NaN) sigma is a missing forecast: the policy's fallback decides.

    Parameters
    ----------
    policy
        The asset's policy.
    asset
        Its name (the policy's state key).
    sigma
        Forecast sigma indexed by forecast ``ts`` (UTC), increasing.
    publish_lag
        Delay between a forecast's ``ts`` and its publication.
    signals
        External inputs of the margin mechanisms (:data:`serving.mechanisms.SIGNAL_COLUMNS`,
        any subset) indexed by forecast ``ts``: the value at ``ts`` must be known at ``ts``.
        Read only when a mechanism is on; a ``ts`` without a row has them missing (never
        filled). The stressed and long-run sigma come from ``sigma`` itself
        (:func:`serving.mechanisms.rolling_signals`, point in time).

    Yields
    ------
    tuple
        ``(ts, published_at, decision)`` per forecast.
    """
    references = rolling_sigma_ref(sigma, policy.config).to_numpy()
    inputs = _signal_rows(policy, sigma, signals)
    state = policy.initial_state(asset)
    for i, (ts, value, ref) in enumerate(
        zip(sigma.index, sigma.to_numpy(float), references, strict=True)
    ):
        known = bool(np.isfinite(value))
        now = ts.to_pydatetime() + publish_lag
        decision = policy.step(
            state,
            float(value) if known else None,
            ts.to_pydatetime() if known else None,
            now,
            None if np.isnan(ref) else float(ref),
            None if inputs is None else inputs[i],
        )
        state = decision.state
        yield ts, now, decision


def _signal_rows(
    policy: MultiplierPolicy, sigma: pd.Series, signals: pd.DataFrame | None
) -> list[PolicySignals] | None:
    """Per forecast, the mechanisms' inputs; ``None`` for the default policy."""
    if not any_mechanism(policy.config):
        return None
    history = rolling_signals(sigma, policy.config)
    given = pd.DataFrame(index=sigma.index)
    if signals is not None:
        unknown = sorted(set(signals.columns) - set(SIGNAL_COLUMNS))
        if unknown:
            raise ForecastContractError(
                f"unknown policy signal columns {unknown}; expected a subset of "
                f"{list(SIGNAL_COLUMNS)}"
            )
        if not signals.index.is_unique:
            raise ForecastContractError("policy signals repeat a forecast ts")
        given = signals.reindex(sigma.index)
    columns = {c: given[c].to_numpy(float) if c in given else None for c in SIGNAL_COLUMNS}
    stress = history["sigma_stress"].to_numpy(float)
    long_run = history["sigma_long"].to_numpy(float)
    return [
        PolicySignals.of(
            sigma_stress=stress[i],
            sigma_long=long_run[i],
            **{c: (None if v is None else v[i]) for c, v in columns.items()},
        )
        for i in range(len(sigma))
    ]


def policy_path(
    policy: MultiplierPolicy,
    asset: str,
    sigma: pd.Series,
    publish_lag: timedelta,
    *,
    signals: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The decisions of :func:`policy_decisions` as a frame.

    Returns
    -------
    pandas.DataFrame
        One row per forecast: ``ts, asset, multiplier, previous, status, reason`` of the
        decision published at ``ts + publish_lag``.
    """
    rows = [
        (ts, asset, d.multiplier, d.previous, d.status, d.reason)
        for ts, _, d in policy_decisions(policy, asset, sigma, publish_lag, signals=signals)
    ]
    return pd.DataFrame(rows, columns=["ts", "asset", "multiplier", "previous", "status", "reason"])


def policy_snapshots(
    policy: MultiplierPolicy,
    asset: str,
    sigma: pd.Series,
    publish_lag: timedelta,
    *,
    liquidity: Mapping[str, float],
    provenance: ProvenanceInfo,
    horizon_hours: int,
    venue: str = "replay",
    signals: pd.DataFrame | None = None,
) -> list[dict[str, Any]]:
    """The RiskSnapshots a publisher would have made from one asset's forecast history.

    Every decision of :func:`policy_decisions` becomes the publisher's unsigned snapshot
    (:func:`serving.publishing.decision_snapshot`): status, fallback, ``valid_until`` and
    ``update_id`` as published. A venue (or the replay, through
    :func:`liquidation.snapshot_stream.multipliers_from_snapshots`) reads nothing else.

    Parameters
    ----------
    policy, asset, sigma, publish_lag
        As in :func:`policy_decisions`.
    liquidity
        The asset's liquidity block (``amihud``, ``spread_bps``, ``slippage_bps``,
        ``standard_size_usd``).
    provenance
        Model name and version stamped on every snapshot.
    horizon_hours, venue
        Copied into every snapshot.
    signals
        The margin mechanisms' inputs, as in :func:`policy_decisions`.

    Returns
    -------
    list of dict
        One snapshot per forecast, ``update_id`` 1, 2, ...
    """
    out = []
    values = sigma.to_numpy(float)
    decisions = policy_decisions(policy, asset, sigma, publish_lag, signals=signals)
    for i, (ts, now, decision) in enumerate(decisions):
        forecast = {"ts": ts, "sigma": float(values[i])} if np.isfinite(values[i]) else None
        out.append(
            decision_snapshot(
                asset=asset,
                update_id=i + 1,
                forecast=forecast,
                now=now,
                decision=decision,
                config=policy.config,
                liquidity=liquidity,
                provenance=provenance,
                venue=venue,
                horizon_hours=horizon_hours,
            )
        )
    return out


def _realized(group: pd.DataFrame, horizon_hours: int) -> tuple[pd.Series | None, pd.Series]:
    horizon = pd.Timedelta(hours=horizon_hours)
    index = group.index.to_series()
    if "realized_vol" in group.columns:
        return group["realized_vol"].astype(float), index - horizon
    if "rv_fwd" in group.columns:
        rv = group["rv_fwd"].astype(float)
        if (rv < 0).any():
            raise ForecastContractError("rv_fwd must be a non-negative variance")
        return np.sqrt(rv), index
    return None, index


def _spike_leads(
    path: pd.DataFrame,
    realized: pd.Series,
    window_start: pd.Series,
    top: int,
    separation_hours: float,
    lookback_hours: float,
    rise_threshold: float,
) -> list[SpikeLead]:
    multiplier = path.set_index("ts")["multiplier"]
    separation = pd.Timedelta(hours=separation_hours)
    lookback = pd.Timedelta(hours=lookback_hours)
    chosen: list[pd.Timestamp] = []
    for ts, _ in realized.dropna().sort_values(ascending=False).items():
        if all(abs(ts - c) >= separation for c in chosen):
            chosen.append(ts)
        if len(chosen) == top:
            break
    leads = []
    for peak in chosen:
        start = window_start.loc[peak]
        before = multiplier[multiplier.index <= start - lookback]
        base = float(before.iloc[-1]) if len(before) else float("nan")
        window = multiplier[(multiplier.index > start - lookback) & (multiplier.index <= peak)]
        risen = window[window >= base * (1 + rise_threshold)] if len(before) else window[:0]
        lead = (start - risen.index[0]) / pd.Timedelta(hours=1) if len(risen) else None
        leads.append(
            SpikeLead(
                peak_ts=peak,
                window_start=start,
                realized_vol=float(realized.loc[peak]),
                lead_hours=None if lead is None else float(lead),
                multiplier_before=base,
                multiplier_at_peak=float(multiplier.loc[peak]),
            )
        )
    return leads


def _summarise(
    asset: str, path: pd.DataFrame, policy: MultiplierPolicy, spikes: list[SpikeLead]
) -> AssetReplay:
    cfg = policy.config
    m = path["multiplier"].to_numpy(float)
    changes = int(np.sum(~np.isclose(m, path["previous"].to_numpy(float), rtol=0, atol=1e-12)))
    span = path["ts"].iloc[-1] - path["ts"].iloc[0] if len(path) else pd.Timedelta(0)
    weeks = max(span / pd.Timedelta(days=7), 1.0 / 7)
    return AssetReplay(
        asset=asset,
        updates=len(path),
        weeks=weeks,
        changes=changes,
        changes_per_week=changes / weeks,
        time_at_floor=float(np.mean(np.isclose(m, cfg.floor, rtol=0, atol=1e-9))) if len(m) else 0,
        time_at_cap=float(np.mean(np.isclose(m, cfg.cap, rtol=0, atol=1e-9))) if len(m) else 0,
        fallback_share=float(path["status"].isin(["fallback", "stale"]).mean()) if len(m) else 0,
        mean_multiplier=float(m.mean()) if len(m) else float("nan"),
        spikes=spikes,
    )


def _rounded(value: float) -> float | None:
    return None if np.isnan(value) else round(value, 4)
