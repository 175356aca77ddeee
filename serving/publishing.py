"""Publish one batch of signed RiskSnapshots from forecasts, liquidity and the policy.

:func:`publish_batch` is the library function behind ``dynamargin publish``. It is
all-or-nothing: snapshots are built and signed in memory, then appended in one database
transaction. Any failure (bad input, a signing error, an ``update_id`` race, a crash) leaves
the previous batch as the one served.

Point in time: only forecast rows with ``ts <= now`` are used, and the trailing-median
reference uses only forecasts up to the one being published.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from contracts.forecast import ProvenanceInfo, validate_forecasts
from serving.errors import OperatorActionError, PublishError, ServingError
from serving.input_validation import (
    normalise_asset,
    normalise_note,
    require_published_asset,
    to_utc,
)
from serving.keys import load_signing_keys
from serving.log_integrity import LogVerifier, trusted_keys_from_env
from serving.mechanisms import signals_at, versioned_provenance
from serving.policy import (
    AuditRecord,
    MultiplierPolicy,
    PolicyBook,
    PolicyConfig,
    PolicyDecision,
    PolicyState,
    sigma_ref_at,
)
from serving.risk_metrics import TailMetrics, liquidity_metrics, tail_metrics
from serving.signing import SnapshotSigner
from serving.standard import (
    SCHEMA_VERSION,
    RiskSnapshot,
    format_time,
    parse_time,
    reference_id,
)
from serving.store import (
    BatchReceipt,
    CheckpointSigner,
    PublicationRecord,
    PublicationStore,
    StoreMode,
)


@dataclass(frozen=True)
class PublishedBatch:
    """A committed batch: the signed snapshots and the policy decisions behind them."""

    receipt: BatchReceipt
    snapshots: list[dict[str, Any]]
    decisions: dict[str, PolicyDecision] = field(default_factory=dict)

    def rows(self) -> list[dict[str, object]]:
        """One plain dict per published snapshot: what a table or JSON output shows."""
        return [
            {
                "asset": snap["asset"],
                "batch_id": self.receipt.batch_id,
                "update_id": snap["update_id"],
                "status": snap["status"],
                "multiplier": snap["margin"]["multiplier"],
                "previous": snap["margin"]["previous_multiplier"],
                "reason": self.decisions[snap["asset"]].reason,
                "sigma": snap["sigma"],
            }
            for snap in self.snapshots
        ]


def publication_mode(publish_time: Literal["now", "data-end"]) -> StoreMode:
    """The store mode a publication time belongs in.

    ``now`` (wall clock) is a live publication; ``data-end`` (the close of the last bar, an
    as-of time) is a replay. A store is created in one mode and refuses the other
    (:mod:`serving.store`), so the two never mix.
    """
    return "live" if publish_time == "now" else "replay"


def sign_and_publish(
    forecasts: pd.DataFrame,
    provenance: ProvenanceInfo,
    bars: pd.DataFrame,
    assets: Sequence[str],
    now: datetime,
    *,
    policy: PolicyBook,
    store_url: str,
    workdir: Path,
    horizon_hours: int,
    venue: str = "binance",
    mode: StoreMode = "live",
) -> PublishedBatch:
    """Liquidity from ``bars``, the signing keys of ``workdir``, then :func:`publish_batch`.

    Parameters
    ----------
    forecasts, provenance
        What to publish and where it came from (an empty frame publishes the fallback).
    bars
        Recent bars of the assets (the liquidity metrics' 30-day window).
    assets
        Every asset of the batch, all or nothing.
    now
        Publication time (tz-aware).
    policy
        Per-asset policy configs.
    store_url
        The publication store.
    workdir
        Work dir whose ``keys/`` holds the signing keys (made on first use, :mod:`serving.keys`).
    horizon_hours, venue
        Copied into every snapshot.
    mode
        The store's mode: ``live`` for wall-clock publications, ``replay`` for as-of ones
        (:func:`publication_mode`); the store refuses the other.

    Raises
    ------
    PublishError
        If ``assets`` is empty or anything fails; the previous batch stays the one served.
    """
    if not assets:
        raise PublishError("nothing to publish: no assets in the data")
    liquidity = liquidity_metrics(bars, as_of=pd.Timestamp(now))
    signer = SnapshotSigner(load_signing_keys(workdir))
    with PublicationStore(store_url, mode=mode) as store:
        return publish_batch(
            forecasts,
            liquidity,
            policy,
            store,
            signer,
            provenance,
            now,
            venue=venue,
            horizon_hours=horizon_hours,
            assets=list(assets),
        )


def publish_batch(
    forecasts: pd.DataFrame,
    liquidity: pd.DataFrame | Mapping[str, Mapping[str, float]],
    policy: PolicyBook,
    store: PublicationStore,
    signer: SnapshotSigner,
    provenance: ProvenanceInfo,
    now: datetime,
    *,
    venue: str = "binance",
    horizon_hours: int = 24,
    assets: Iterable[str] | None = None,
) -> PublishedBatch:
    """Build, sign and atomically store one snapshot per asset.

    Parameters
    ----------
    forecasts
        Forecast-contract frame (history allowed: the latest row with ``ts <= now`` per asset
        is published, earlier rows feed the trailing-median reference).
    liquidity
        Per-asset ``amihud, spread_bps, slippage_bps, standard_size_usd`` (a frame indexed
        by asset, as from :func:`serving.risk_metrics.liquidity_metrics`, or a mapping). An
        asset without a row reuses its last published liquidity.
    policy
        Per-asset policy configs.
    store
        Publication store; supplies the policy states and last update ids.
    signer
        Signs every snapshot (Ed25519 and EIP-712).
    provenance
        Provenance shared by the batch.
    now
        Publication time (tz-aware).
    venue, horizon_hours
        Copied into every snapshot.
    assets
        Assets to publish; by default those with a forecast, a policy entry or a past
        publication (so an asset whose forecast vanished gets a fallback, not silence).

    Returns
    -------
    PublishedBatch

    Raises
    ------
    PublishError
        If anything fails; nothing of the batch is stored.
    """
    if now.tzinfo is None:
        raise PublishError("publish_batch needs a tz-aware `now` (UTC)")
    verifier = LogVerifier({signer.public_key, *trusted_keys_from_env()})
    try:
        return _publish(
            forecasts,
            liquidity,
            policy,
            store,
            signer,
            verifier,
            provenance,
            now,
            venue,
            horizon_hours,
            assets,
        )
    except PublishError:
        raise
    except ServingError as exc:
        raise PublishError(
            f"batch at {format_time(now)} failed, nothing was written and the previous batch "
            f"is still served: {exc}"
        ) from exc


def apply_operator_action(
    store: PublicationStore,
    book: PolicyBook,
    asset: str,
    action: str,
    operator: str,
    note: str,
    now: datetime,
    multiplier: float | None = None,
    until: datetime | None = None,
    *,
    verifier: LogVerifier | None = None,
    checkpoint_signer: CheckpointSigner | None = None,
) -> AuditRecord:
    """Halt, resume, override or clear an override for ``asset``; audited in the store.

    The CLI and the API both act through this function, so they accept the same asset
    names (:func:`serving.input_validation.require_published_asset`) and notes. The new
    policy state and the audit record are written in one transaction, so the next
    :func:`publish_batch` sees the action.

    Parameters
    ----------
    verifier
        Checks the asset's chains before its state is used (default: chains and heads
        only, without pinned keys).
    checkpoint_signer
        When given (the publisher's key), a signed checkpoint covers the action at once.

    Raises
    ------
    InvalidInputError
        For a malformed asset name or note.
    UnpublishedAssetError
        For an asset this store never published.
    IntegrityFailure
        If the asset's stored rows do not verify.
    OperatorActionError
        For an unknown action, a missing override value or a value outside ``[floor, cap]``.
    """
    canonical = require_published_asset(asset, store.last_update_ids())
    note = normalise_note(note)
    if until is not None:
        until = to_utc(until, "until")
    (verifier or LogVerifier(None)).check_heads(store).require(canonical)
    policy = book.policy(canonical)
    state = store.policy_states().get(canonical) or _state_from_store(store, policy, canonical)
    if action == "halt":
        new_state, record = policy.halt(state, operator, note, now)
    elif action == "resume":
        new_state, record = policy.resume(state, operator, note, now)
    elif action == "override":
        if multiplier is None:
            raise OperatorActionError(f"override of {canonical} needs a multiplier value")
        new_state, record = policy.override(state, multiplier, until, operator, note, now)
    elif action == "clear_override":
        new_state, record = policy.clear_override(state, operator, note, now)
    else:
        raise OperatorActionError(
            f"unknown operator action {action!r}; use halt, resume, override or clear_override"
        )
    store.record_operator_action(record, new_state, checkpoint_signer)
    return record


def _publish(
    forecasts: pd.DataFrame,
    liquidity: pd.DataFrame | Mapping[str, Mapping[str, float]],
    book: PolicyBook,
    store: PublicationStore,
    signer: SnapshotSigner,
    verifier: LogVerifier,
    provenance: ProvenanceInfo,
    now: datetime,
    venue: str,
    horizon_hours: int,
    assets: Iterable[str] | None,
) -> PublishedBatch:
    frame = validate_forecasts(forecasts)
    known = frame[frame["ts"] <= pd.Timestamp(now)]
    liquidity_rows = _liquidity_rows(liquidity)
    # Nothing stored is used before it verifies: a rewritten policy state or snapshot
    # would otherwise be carried into the new batch and signed again.
    report = verifier.check_heads(store)
    states = store.policy_states()
    last_ids = store.last_update_ids()
    previous = report.latest
    if assets is None:
        named = {*known["asset"].unique(), *book.assets, *states, *last_ids}
    else:
        named = set(assets)
    chosen = sorted({normalise_asset(str(asset)) for asset in named})
    if not chosen:
        raise PublishError("nothing to publish: no forecasts, configured assets or history")
    for asset in chosen:
        report.require(asset)

    records: list[PublicationRecord] = []
    decisions: dict[str, PolicyDecision] = {}
    by_asset = {a: g for a, g in known.groupby("asset", sort=False)}
    for asset in chosen:
        config = book.for_asset(asset)
        policy = MultiplierPolicy(config)
        history = by_asset.get(asset)
        row = history.iloc[-1] if history is not None and len(history) else None
        state = states.get(asset) or _initial_state(policy, asset, previous.get(asset))
        sigma = _finite_or_none(row["sigma"]) if row is not None else None
        as_of = row["ts"].to_pydatetime() if row is not None else None
        if row is not None and sigma is None:
            # Keep NaN distinct from "missing": the policy reports fallback_nonfinite.
            sigma = float("nan")
        reference = config.sigma_ref
        if reference is None and history is not None:
            reference = sigma_ref_at(history.set_index("ts")["sigma"], row["ts"], config)
        signals = None
        if row is not None and history is not None:
            # The margin mechanisms' inputs (None for the default policy): serving.mechanisms.
            signals = signals_at(history.set_index("ts")["sigma"], row["ts"], config, row)
        decision = policy.step(state, sigma, as_of, now, reference, signals)
        decisions[asset] = decision
        usable = policy.check_input(sigma, as_of, now, reference) is None
        tails, sigmas = _tails(row, usable, decision, config)
        prior = previous.get(asset)
        snapshot = _snapshot(
            asset=asset,
            venue=venue,
            update_id=last_ids.get(asset, 0) + 1,
            as_of=as_of or (parse_time(prior.snapshot["as_of"]) if prior else now),
            now=now,
            decision=decision,
            config=config,
            horizon_hours=horizon_hours,
            sigmas=sigmas,
            tails=tails,
            liquidity=_liquidity_for(asset, liquidity_rows, prior),
            provenance=provenance,
            row=row,
        )
        signed = signer.sign(snapshot).to_dict()
        records.append(PublicationRecord(signed, decision.reason, decision.state))
    receipt = store.append_batch(records, now, checkpoint_signer=signer)
    return PublishedBatch(receipt, [dict(r.snapshot) for r in records], decisions)


def _initial_state(policy: MultiplierPolicy, asset: str, prior: Any) -> PolicyState:
    if prior is None:
        return policy.initial_state(asset)
    # A store written without policy states (e.g. imported) still continues from the last
    # published multiplier rather than restarting from the initial one.
    return PolicyState(asset=asset, multiplier=prior.multiplier, updated_at=prior.published_at)


def _state_from_store(store: PublicationStore, policy: MultiplierPolicy, asset: str) -> PolicyState:
    return _initial_state(policy, asset, store.latest(asset))


def _tails(
    row: pd.Series | None, usable: bool, decision: PolicyDecision, config: PolicyConfig
) -> tuple[TailMetrics, tuple[float, float, float]]:
    if usable and row is not None:
        sigma = float(row["sigma"])
        lower = _finite_or_none(row["sigma_lower"])
        upper = _finite_or_none(row["sigma_upper"])
        lower = sigma if lower is None else lower
        upper = sigma if upper is None else upper
        tails = tail_metrics(
            sigma, lower, upper, _finite_or_none(row["var_99"]), _finite_or_none(row["es_99"])
        )
        return tails, (sigma, lower, upper)
    # Unusable forecast: report the sigma the published multiplier implies, never less than
    # a finite stale forecast, so the payload is as conservative as the multiplier.
    if decision.sigma_ref is not None and math.isfinite(decision.sigma_ref):
        sigma = decision.multiplier * decision.sigma_ref
    else:
        sigma = config.fallback_sigma
    stale = _finite_or_none(row["sigma"]) if row is not None else None
    if stale is not None and config.sigma_min <= stale <= config.sigma_max:
        sigma = max(sigma, stale)
    return tail_metrics(sigma, sigma, sigma), (sigma, sigma, sigma)


def _snapshot(
    *,
    asset: str,
    venue: str,
    update_id: int,
    as_of: datetime,
    now: datetime,
    decision: PolicyDecision,
    config: PolicyConfig,
    horizon_hours: int,
    sigmas: tuple[float, float, float],
    tails: TailMetrics,
    liquidity: Mapping[str, float],
    provenance: ProvenanceInfo,
    row: pd.Series | None,
) -> RiskSnapshot:
    model_name = provenance.model_name or (str(row["model"]) if row is not None else "fallback")
    model_version = provenance.model_version or (
        str(row["model_version"]) if row is not None else "rule"
    )
    # A policy with margin mechanisms names its version and variant (serving.mechanisms).
    model_version = versioned_provenance(model_version, config)
    data: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "asset": asset,
        "venue": venue,
        "update_id": update_id,
        "as_of": as_of,
        "published_at": now,
        "valid_until": decision.valid_until,
        "horizon_hours": horizon_hours,
        "sigma": sigmas[0],
        "sigma_lower": sigmas[1],
        "sigma_upper": sigmas[2],
        "var_99": tails.var,
        "var_99_lower": tails.var_lower,
        "var_99_upper": tails.var_upper,
        "es_99": tails.es,
        "es_99_lower": tails.es_lower,
        "es_99_upper": tails.es_upper,
        "liquidity": dict(liquidity),
        "margin": {
            "multiplier": decision.multiplier,
            "previous_multiplier": decision.previous,
            "base_imf": config.base_imf,
            "base_mmf": config.base_mmf,
            "imf": config.base_imf * decision.multiplier,
            "mmf": config.base_mmf * decision.multiplier,
        },
        "status": decision.status,
        "provenance": {
            "model_name": model_name,
            "model_version": model_version,
            "mlflow_run_id": provenance.mlflow_run_id,
            "feature_set_hash": provenance.feature_set_hash,
            "data_through": as_of,
            "reference_id": "pending",
        },
    }
    draft = RiskSnapshot.model_validate(data)
    as_dict = draft.to_dict()
    provenance_block = draft.provenance.model_copy(update={"reference_id": reference_id(as_dict)})
    return draft.model_copy(update={"provenance": provenance_block})


def _liquidity_rows(
    liquidity: pd.DataFrame | Mapping[str, Mapping[str, float]],
) -> dict[str, dict[str, float]]:
    if isinstance(liquidity, pd.DataFrame):
        return {str(a): {k: float(v) for k, v in r.items()} for a, r in liquidity.iterrows()}
    return {str(a): {k: float(v) for k, v in r.items()} for a, r in liquidity.items()}


def _liquidity_for(
    asset: str, rows: Mapping[str, Mapping[str, float]], prior: Any
) -> Mapping[str, float]:
    fields = ("amihud", "spread_bps", "slippage_bps", "standard_size_usd")
    if asset in rows:
        row = rows[asset]
        missing = [f for f in fields if f not in row or not math.isfinite(row[f])]
        if missing:
            raise PublishError(f"liquidity of {asset} lacks finite {missing}; recompute it")
        return {f: row[f] for f in fields}
    if prior is not None:
        return prior.snapshot["liquidity"]
    raise PublishError(
        f"no liquidity metrics for {asset} and no earlier publication to reuse; compute them "
        "with serving.risk_metrics.liquidity_metrics from its bars"
    )


def _finite_or_none(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def decision_snapshot(
    *,
    asset: str,
    update_id: int,
    forecast: Mapping[str, Any] | None,
    now: datetime,
    decision: PolicyDecision,
    config: PolicyConfig,
    liquidity: Mapping[str, float],
    provenance: ProvenanceInfo,
    venue: str,
    horizon_hours: int,
) -> dict[str, Any]:
    """The unsigned RiskSnapshot dict the publisher makes from one policy decision.

    The same tails, fallback sigma and payload as :func:`publish_batch`, without a store or a
    signature: the historical replay turns its policy decisions into the snapshots a venue
    would have received (:func:`serving.policy_replay.policy_snapshots`).

    Parameters
    ----------
    forecast
        The forecast row decided on (``ts``, ``sigma`` and optionally ``sigma_lower``,
        ``sigma_upper``, ``var_99``, ``es_99``, ``model``, ``model_version``); ``None`` if
        there was none.
    Other parameters
        As in :func:`publish_batch`.
    """
    policy = MultiplierPolicy(config)
    sigma = _finite_or_none(forecast["sigma"]) if forecast is not None else None
    as_of = pd.Timestamp(forecast["ts"]).to_pydatetime() if forecast is not None else None
    usable = policy.check_input(sigma, as_of, now, decision.sigma_ref) is None
    row: Any = None
    if forecast is not None:
        row = {field: forecast.get(field, float("nan")) for field in _FORECAST_FIELDS}
    tails, sigmas = _tails(row, usable, decision, config)
    return _snapshot(
        asset=asset,
        venue=venue,
        update_id=update_id,
        as_of=as_of or now,
        now=now,
        decision=decision,
        config=config,
        horizon_hours=horizon_hours,
        sigmas=sigmas,
        tails=tails,
        liquidity=liquidity,
        provenance=provenance,
        row=row,
    ).to_dict()


_FORECAST_FIELDS = (
    "ts", "sigma", "sigma_lower", "sigma_upper", "var_99", "es_99", "model", "model_version"
)  # fmt: skip
