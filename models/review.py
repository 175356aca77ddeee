"""Review gates a challenger must pass before it may become ``@champion``.

The gates, each configurable through :class:`GateConfig`:

``qlike_vs_champion`` / ``qlike_vs_<baseline>``
    On pooled QLIKE the challenger must not be significantly worse than the champion and
    each baseline (HAR by default). Pooling averages the per-asset losses of each hour, and a
    Diebold-Mariano test with a HAC lag of at least ``H - 1`` (overlapping targets) decides.
    "Worse" is one-sided: ``DM > 0`` with ``P(Z >= DM) < alpha``. With
    ``require_improvement`` the challenger must instead be significantly *better*. Against a
    baseline there is one more rule: a challenger whose pooled QLIKE is higher than the
    baseline's fails, whatever the DM test says (a model that loses to HAR is not promoted
    as "not significantly worse"; the training flow registers the best baseline instead,
    :func:`models.training.choose_candidate`). A challenger that *is* the baseline passes
    and the gate says so.
``qlike_vs_har_<H>h``
    Per evaluated horizon (the ``horizons`` section of a multi-horizon evaluation), the
    same rule against HAR, with each asset's DM statistic and p-value listed.
``quantile_coverage_<target>``
    Per tail target (the ``tails`` section), every asset's exception rate of the calibrated
    quantile passes the Kupiec POF test at ``coverage_alpha``.
``var_green_zone``
    The 99% VaR backtest of every asset is in the Basel green zone.
``leakage``
    The look-ahead check ran and passed.
``data_freshness``
    The training data reach within ``max_data_age`` of the reference time.

Everything here is pure (pandas in, a :class:`GateReport` out); the registry stores the
report as version tags and the review report renders it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats

from contracts.timestamps import aware_utc
from models.errors import ModelsError
from models.evaluation import EvaluationError, diebold_mariano, qlike
from models.registry import TAG_GATES_JSON, TAG_GATES_PASSED

FORECAST_KEY: Final[tuple[str, str]] = ("ts", "asset")
MODEL_COLUMN: Final = "model"
FORECAST_COLUMN: Final = "variance"
REALIZED_COLUMN: Final = "rv"


class ReviewInputError(ModelsError, ValueError):
    """Evidence handed to the review is malformed (missing columns, models or keys)."""


class GateConfig(BaseModel):
    """Configuration of the review gates.

    Attributes
    ----------
    alpha
        Size of the Diebold-Mariano tests.
    require_improvement
        If True the challenger must be significantly better (not merely not worse).
    baselines
        Baseline model names (the ``model`` column of the forecasts) to beat.
    allowed_var_zones
        Basel zones accepted for every asset.
    var_zone_key
        ``zone`` (whole test period, Basel thresholds scaled to its length) or ``zone_250``
        (the last 250 daily observations, the classic Basel window).
    max_data_age
        Largest accepted gap between the data-through time and the reference time.
    min_overlap_hours
        Fewest common hours needed for a DM comparison; fewer fails the gate.
    require_leakage_check
        Fail when the look-ahead check did not run (not only when it failed).
    coverage_alpha
        Size of the Kupiec POF test of each asset's tail-quantile coverage.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alpha: float = Field(0.05, gt=0.0, lt=0.5)
    require_improvement: bool = False
    baselines: tuple[str, ...] = ("har",)
    allowed_var_zones: tuple[str, ...] = ("green",)
    var_zone_key: Literal["zone", "zone_250"] = "zone"
    max_data_age: timedelta = timedelta(hours=48)
    min_overlap_hours: int = Field(168, ge=2)
    require_leakage_check: bool = True
    coverage_alpha: float = Field(0.05, gt=0.0, lt=0.5)


@dataclass(frozen=True)
class CandidateEvidence:
    """What the review knows about one model version.

    Parameters
    ----------
    model
        Name of this model in the ``model`` column of ``forecasts``.
    evaluation
        ``EvaluationResult.to_json_dict()``: nested or dotted keys ``assets.<SYM>.qlike.<m>``,
        ``assets.<SYM>.var99.exceptions|kupiec_p|zone``, ``mean.qlike.<m>``.
    forecasts
        ``EvaluationResult.forecasts``: long frame with at least ``ts, asset, model,
        variance`` (forecast) and ``rv`` (realized), one row per model and ``(ts, asset)``.
    data_through
        Last time the training and evaluation data cover (UTC).
    horizon_hours
        Forecast horizon H.
    leakage_passed
        Result of the look-ahead check; None if it did not run.
    leakage_detail
        What the look-ahead check reported.
    version
        Registry version, when known.
    """

    model: str
    evaluation: Mapping[str, Any]
    forecasts: pd.DataFrame
    data_through: datetime
    horizon_hours: int
    leakage_passed: bool | None = None
    leakage_detail: str = ""
    version: str | None = None

    def model_forecasts(self, model: str | None = None) -> pd.DataFrame:
        """``ts, asset, variance, rv`` of one model (default: this candidate)."""
        name = self.model if model is None else model
        missing = {*FORECAST_KEY, MODEL_COLUMN, FORECAST_COLUMN, REALIZED_COLUMN} - set(
            self.forecasts.columns
        )
        if missing:
            raise ReviewInputError(
                f"forecasts of {self.model} lack columns {sorted(missing)}; expected "
                f"{[*FORECAST_KEY, MODEL_COLUMN, FORECAST_COLUMN, REALIZED_COLUMN]}"
            )
        rows = self.forecasts.loc[self.forecasts[MODEL_COLUMN] == name]
        if rows.empty:
            known = sorted(self.forecasts[MODEL_COLUMN].astype(str).unique())
            raise ReviewInputError(f"no forecasts for model {name!r}; models present: {known}")
        return rows[[*FORECAST_KEY, FORECAST_COLUMN, REALIZED_COLUMN]]


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate: pass/fail, a sentence for the reviewer, and its numbers."""

    name: str
    passed: bool
    summary: str
    metrics: Mapping[str, float | str] = field(default_factory=dict)


@dataclass(frozen=True)
class GateReport:
    """All gate outcomes for one challenger.

    ``passed`` is True only if every gate passed.
    """

    results: tuple[GateResult, ...]
    evaluated_at: datetime
    reference_time: datetime
    config: GateConfig
    challenger_version: str | None = None
    champion_version: str | None = None

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    @property
    def failures(self) -> tuple[GateResult, ...]:
        return tuple(result for result in self.results if not result.passed)

    def gate(self, name: str) -> GateResult:
        """The result of the gate called ``name``."""
        for result in self.results:
            if result.name == name:
                return result
        raise KeyError(f"no gate {name!r}; gates: {[r.name for r in self.results]}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (used for the version tag and the report artifact)."""
        return {
            "passed": self.passed,
            "evaluated_at": self.evaluated_at.isoformat(),
            "reference_time": self.reference_time.isoformat(),
            "challenger_version": self.challenger_version,
            "champion_version": self.champion_version,
            "config": self.config.model_dump(mode="json"),
            "results": [
                {
                    "name": r.name,
                    "passed": r.passed,
                    "summary": r.summary,
                    "metrics": {
                        k: finite_or_none(v) if isinstance(v, float) else v
                        for k, v in r.metrics.items()
                    },
                }
                for r in self.results
            ],
        }

    @classmethod
    def from_dict(cls, payload: Mapping[str, Any]) -> GateReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            results=tuple(
                GateResult(r["name"], bool(r["passed"]), r["summary"], dict(r.get("metrics", {})))
                for r in payload["results"]
            ),
            evaluated_at=datetime.fromisoformat(payload["evaluated_at"]),
            reference_time=datetime.fromisoformat(payload["reference_time"]),
            config=GateConfig.model_validate(payload["config"]),
            challenger_version=payload.get("challenger_version"),
            champion_version=payload.get("champion_version"),
        )

    def to_tags(self) -> dict[str, str]:
        """Version tags: overall pass flag, one tag per gate, and the full JSON."""
        tags = {
            TAG_GATES_PASSED: "true" if self.passed else "false",
            TAG_GATES_JSON: json.dumps(self.to_dict(), sort_keys=True, default=str),
        }
        for result in self.results:
            tags[f"dynamargin.gate.{result.name}"] = "pass" if result.passed else "fail"
        return tags


def evaluate_gates(
    challenger: CandidateEvidence,
    champion: CandidateEvidence | None,
    config: GateConfig | None = None,
    *,
    reference_time: datetime | None = None,
    evaluated_at: datetime | None = None,
) -> GateReport:
    """Run every review gate on a challenger.

    Parameters
    ----------
    challenger
        The candidate; its forecasts must include the baselines named in ``config``.
    champion
        The serving model, or None before the first promotion (the champion gate then
        passes and says so).
    config
        Gate settings; defaults to :class:`GateConfig()`.
    reference_time
        "Now" for the freshness gate; pass the as-of time when replaying history.
    evaluated_at
        When the review ran (defaults to the current time).

    Returns
    -------
    GateReport
    """
    config = config or GateConfig()
    now = datetime.now(UTC)
    reference = aware_utc(reference_time or now, "reference_time")
    results = [qlike_gate(challenger, champion, "champion", config)]
    for baseline in config.baselines:
        results.append(qlike_gate(challenger, baseline, baseline, config))
    results.extend(horizon_gates(challenger, config))
    results.extend(quantile_coverage_gates(challenger, config))
    results.append(var_zone_gate(challenger, config))
    results.append(leakage_gate(challenger, config))
    results.append(freshness_gate(challenger, reference, config))
    return GateReport(
        results=tuple(results),
        evaluated_at=aware_utc(evaluated_at or now, "evaluated_at"),
        reference_time=reference,
        config=config,
        challenger_version=challenger.version,
        champion_version=None if champion is None else champion.version,
    )


def qlike_gate(
    challenger: CandidateEvidence,
    other: CandidateEvidence | str | None,
    label: str,
    config: GateConfig,
) -> GateResult:
    """Pooled-QLIKE Diebold-Mariano gate against a champion or a baseline.

    ``other`` is the champion's evidence, the name of a baseline model inside the
    challenger's forecasts, or None when there is no champion yet.
    """
    name = f"qlike_vs_{label}"
    if other is None:
        return GateResult(name, True, "no champion yet: compared with the baselines only")
    if isinstance(other, str) and other == challenger.model:
        return GateResult(
            name,
            True,
            f"the challenger is the baseline {label} itself: the primary model's pooled QLIKE "
            f"was worse than {label}'s, so the best baseline was registered instead",
            {"challenger_is_baseline": "true"},
        )
    theirs = (
        challenger.model_forecasts(other) if isinstance(other, str) else other.model_forecasts()
    )
    mine = challenger.model_forecasts()
    pooled = pooled_losses(mine, theirs)
    n = len(pooled)
    if n < config.min_overlap_hours:
        return GateResult(
            name,
            False,
            f"only {n} common hours with {label} (< {config.min_overlap_hours}); "
            "cannot compare, re-evaluate both on the same period",
            {"n": float(n)},
        )
    try:
        dm = diebold_mariano(pooled["challenger"], pooled["other"], challenger.horizon_hours)
    except EvaluationError as exc:
        return GateResult(name, False, f"Diebold-Mariano test failed: {exc}", {"n": float(n)})
    p_worse = float(stats.norm.sf(dm.statistic))
    p_better = float(stats.norm.cdf(dm.statistic))
    metrics: dict[str, float | str] = {
        "qlike_challenger": float(pooled["challenger"].mean()),
        "qlike_other": float(pooled["other"].mean()),
        "dm_statistic": dm.statistic,
        "p_worse": p_worse,
        "p_better": p_better,
        "n": float(dm.n),
        "hac_lag": float(dm.lag),
    }
    passed, summary = dm_decision(metrics, label, config, against_baseline=isinstance(other, str))
    return GateResult(name, passed, summary, metrics)


def dm_decision(
    metrics: Mapping[str, Any], label: str, config: GateConfig, against_baseline: bool
) -> tuple[bool, str]:
    """The one rule of every QLIKE gate, from its pooled numbers.

    ``metrics`` holds ``qlike_challenger``, ``qlike_other``, ``dm_statistic``, ``p_worse``,
    ``p_better`` and ``n``. The challenger fails when it is significantly worse (or, with
    ``require_improvement``, not significantly better); against a baseline it also fails
    when its pooled QLIKE is higher, whatever the DM test says.

    Returns
    -------
    tuple
        ``(passed, summary)``.
    """
    statistic = float(metrics["dm_statistic"])
    p_worse, p_better = float(metrics["p_worse"]), float(metrics["p_better"])
    verdict = (
        f"QLIKE {metrics['qlike_challenger']:.4f} vs {label} {metrics['qlike_other']:.4f}, "
        f"DM {statistic:+.2f} over {int(float(metrics['n']))} h"
    )
    if config.require_improvement:
        passed = statistic < 0 and p_better < config.alpha
        outcome = (
            f"significantly better (p={p_better:.3g})"
            if passed
            else (f"not significantly better (p={p_better:.3g} >= {config.alpha})")
        )
    else:
        passed = not (statistic > 0 and p_worse < config.alpha)
        outcome = (
            f"not significantly worse (p_better={p_better:.3g})"
            if passed
            else (f"significantly worse (p={p_worse:.3g} < {config.alpha})")
        )
        worse_than_baseline = against_baseline and (
            float(metrics["qlike_challenger"]) > float(metrics["qlike_other"])
        )
        if passed and worse_than_baseline:
            passed = False
            outcome = (
                f"worse than the baseline {label} on pooled QLIKE: not promoted, whatever the "
                f"DM test says (p_worse={p_worse:.3g})"
            )
        elif passed and against_baseline:
            outcome = (
                f"better than {label} (p_better={p_better:.3g}"
                f"{', significant' if p_better < config.alpha else ', not significant'})"
            )
    return passed, f"{verdict}: {outcome}"


def horizon_gates(challenger: CandidateEvidence, config: GateConfig) -> list[GateResult]:
    """One QLIKE gate against HAR per evaluated horizon (``qlike_vs_har_<H>h``).

    Reads the ``horizons`` section of the evaluation (:func:`models.horizons.horizon_summary`):
    the pooled comparison decides with :func:`dm_decision` (against a baseline: a higher
    pooled QLIKE fails too), and the per-asset DM statistics and p-values are listed. An
    evaluation without that section has no horizon gates.
    """
    results = []
    for horizon, entry in sorted(_section(challenger.evaluation, "horizons").items(), key=_num):
        reference = str(entry.get("reference", "har"))
        name = f"qlike_vs_{reference}_{horizon}h"
        pooled = entry.get("pooled")
        if challenger.model == reference:
            results.append(
                GateResult(
                    name,
                    True,
                    f"{horizon}h: the challenger is the baseline {reference} itself",
                    {"challenger_is_baseline": "true"},
                )
            )
            continue
        if not pooled:
            results.append(
                GateResult(name, False, f"{horizon}h: no pooled comparison with {reference}")
            )
            continue
        metrics: dict[str, float | str] = {k: float(v) for k, v in pooled.items()}
        for asset, numbers in sorted(entry.get("assets", {}).items()):
            metrics[f"dm_statistic.{asset}"] = _float(numbers.get("dm_statistic"))
            metrics[f"dm_pvalue.{asset}"] = _float(numbers.get("dm_pvalue"))
        passed, summary = dm_decision(metrics, reference, config, against_baseline=True)
        results.append(GateResult(name, passed, f"{horizon}h: {summary}", metrics))
    return results


def quantile_coverage_gates(challenger: CandidateEvidence, config: GateConfig) -> list[GateResult]:
    """One coverage gate per tail target (``quantile_coverage_<label>``), per asset.

    Reads the ``tails`` section of the evaluation (:func:`models.tails.score_tails`): the
    primary tail model's exceptions on non-overlapping windows and the Kupiec POF test
    (:func:`models.evaluation.kupiec_pof`). Every asset's Kupiec p-value must be at least
    ``coverage_alpha``; an asset without a test fails (an untested quantile is not a
    covered one). An evaluation without that section has no coverage gates.
    """
    results = []
    for label, entry in sorted(_section(challenger.evaluation, "tails").items()):
        if not isinstance(entry, Mapping) or "assets" not in entry:
            continue  # e.g. timing
        primary = str(entry.get("primary"))
        name = f"quantile_coverage_{label}"
        metrics: dict[str, float | str] = {}
        bad = []
        for asset, models in sorted(entry["assets"].items()):
            numbers = models.get(primary, {})
            p = _float(numbers.get("kupiec_p"))
            metrics[f"exceptions.{asset}"] = _float(numbers.get("exceptions"))
            metrics[f"n.{asset}"] = _float(numbers.get("n"))
            metrics[f"kupiec_lr.{asset}"] = _float(numbers.get("kupiec_lr"))
            metrics[f"kupiec_p.{asset}"] = p
            if not (math.isfinite(p) and p >= config.coverage_alpha):
                bad.append(f"{asset} p={p:.3g}")
        if not entry["assets"]:
            results.append(GateResult(name, False, f"{label}: no asset was backtested"))
        elif bad:
            results.append(
                GateResult(
                    name,
                    False,
                    f"{label} ({primary}): Kupiec p < {config.coverage_alpha} on " + ", ".join(bad),
                    metrics,
                )
            )
        else:
            results.append(
                GateResult(
                    name,
                    True,
                    f"{label} ({primary}): Kupiec p >= {config.coverage_alpha} on all "
                    f"{len(entry['assets'])} assets",
                    metrics,
                )
            )
    return results


def _section(evaluation: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A nested section of an evaluation dict, from nested or dotted keys."""
    value = evaluation.get(key)
    if isinstance(value, Mapping):
        return dict(value)
    nested: dict[str, Any] = {}
    for dotted, item in evaluation.items():
        if not str(dotted).startswith(f"{key}."):
            continue
        node = nested
        parts = str(dotted).split(".")[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = item
    return nested


def _num(item: tuple[str, Any]) -> float:
    try:
        return float(item[0])
    except ValueError:
        return math.inf


def _float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def pooled_qlike(forecasts: pd.DataFrame, models: list[str]) -> dict[str, float]:
    """Pooled QLIKE of each model on the rows every model forecast.

    The hourly cross-asset mean loss of each model, averaged over the hours; the same rows
    for every model, so the numbers compare. ``forecasts`` is the long frame of
    :class:`CandidateEvidence` (``ts, asset, model, variance, rv``).
    """
    wide = forecasts.pivot_table(
        index=list(FORECAST_KEY), columns=MODEL_COLUMN, values=FORECAST_COLUMN, aggfunc="first"
    )
    realized = forecasts.groupby(list(FORECAST_KEY))[REALIZED_COLUMN].first()
    losses = {
        m: pd.Series(qlike(realized, wide[m].reindex(realized.index)), index=realized.index)
        for m in models
    }
    frame = pd.DataFrame(losses).replace([np.inf, -np.inf], np.nan).dropna()
    hourly = frame.groupby(level="ts").mean()
    return {m: float(hourly[m].mean()) for m in models}


def var_zone_gate(challenger: CandidateEvidence, config: GateConfig) -> GateResult:
    """Every asset's 99% VaR backtest must be in an allowed Basel zone.

    An asset of the evaluation without a zone (too few observations for a backtest) fails:
    an untested VaR is not a green one.
    """
    assets = evaluated_assets(challenger.evaluation)
    if not assets:
        return GateResult("var_green_zone", False, "the evaluation lists no assets")
    zones = var_zones(challenger.evaluation, config.var_zone_key)
    metrics: dict[str, float | str] = {f"zone.{a}": zones.get(a, "untested") for a in assets}
    bad = {
        a: zones.get(a, "untested") for a in assets if zones.get(a) not in config.allowed_var_zones
    }
    allowed = "/".join(config.allowed_var_zones)
    if bad:
        listed = ", ".join(f"{a}={z}" for a, z in sorted(bad.items()))
        return GateResult("var_green_zone", False, f"outside {allowed}: {listed}", metrics)
    return GateResult("var_green_zone", True, f"all {len(assets)} assets in {allowed}", metrics)


def leakage_gate(challenger: CandidateEvidence, config: GateConfig) -> GateResult:
    """The look-ahead check must have run and passed."""
    detail = f": {challenger.leakage_detail}" if challenger.leakage_detail else ""
    if challenger.leakage_passed is None:
        passed = not config.require_leakage_check
        return GateResult("leakage", passed, f"look-ahead check did not run{detail}")
    if challenger.leakage_passed:
        return GateResult("leakage", True, f"look-ahead check passed{detail}")
    return GateResult("leakage", False, f"look-ahead check FAILED{detail}")


def freshness_gate(
    challenger: CandidateEvidence, reference_time: datetime, config: GateConfig
) -> GateResult:
    """The data must reach within ``max_data_age`` of the reference time."""
    through = aware_utc(challenger.data_through, "data_through")
    age = reference_time - through
    hours = age.total_seconds() / 3600.0
    metrics: dict[str, float | str] = {"age_hours": hours, "data_through": through.isoformat()}
    limit = config.max_data_age.total_seconds() / 3600.0
    if age < timedelta(0):
        return GateResult(
            "data_freshness",
            False,
            f"data-through {through.isoformat()} is after the reference time "
            f"{reference_time.isoformat()}; check clocks or pass the as-of time",
            metrics,
        )
    if age > config.max_data_age:
        return GateResult(
            "data_freshness",
            False,
            f"data are {hours:.1f} h old (> {limit:.1f} h) at {reference_time.isoformat()}",
            metrics,
        )
    return GateResult(
        "data_freshness", True, f"data are {hours:.1f} h old (<= {limit:.1f} h)", metrics
    )


def pooled_losses(mine: pd.DataFrame, theirs: pd.DataFrame) -> pd.DataFrame:
    """Hourly cross-asset mean QLIKE of two models on their common ``(ts, asset)`` rows.

    The realized variance of ``mine`` is the target for both, so both models are scored on
    the same truth; rows with a non-finite loss in either model are dropped before pooling.
    """
    merged = mine.merge(theirs, on=list(FORECAST_KEY), suffixes=("", "_other"), how="inner")
    merged["challenger"] = qlike(merged[REALIZED_COLUMN], merged[FORECAST_COLUMN])
    merged["other"] = qlike(merged[REALIZED_COLUMN], merged[f"{FORECAST_COLUMN}_other"])
    ok = np.isfinite(merged["challenger"]) & np.isfinite(merged["other"])
    pooled = merged.loc[ok].groupby("ts")[["challenger", "other"]].mean()
    return pooled.sort_index()


def var_zones(evaluation: Mapping[str, Any], key: str = "zone") -> dict[str, str]:
    """``asset -> Basel zone`` (``assets.<SYM>.var99.<key>``) from an evaluation dict."""
    zones = {}
    for dotted, value in flatten_evaluation(evaluation).items():
        parts = dotted.split(".")
        if len(parts) == 4 and parts[0] == "assets" and parts[2:] == ["var99", key]:
            zones[parts[1]] = str(value)
    return zones


def evaluated_assets(evaluation: Mapping[str, Any]) -> list[str]:
    """Assets of an evaluation dict (nested ``assets`` or dotted ``assets.<SYM>.*`` keys)."""
    found = {
        dotted.split(".")[1]
        for dotted in flatten_evaluation(evaluation)
        if dotted.startswith("assets.") and dotted.count(".") >= 2
    }
    return sorted(found)


def flatten_evaluation(evaluation: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested evaluation dicts to dotted keys (already-dotted keys pass through)."""
    flat: dict[str, Any] = {}
    for key, value in evaluation.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_evaluation(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: map non-finite numbers to None."""
    return value if math.isfinite(value) else None
