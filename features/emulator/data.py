"""The market the emulator serves, and what of it a venue shows at a given simulated time.

The data come from ``../shared/data`` through the project's own readers
(:func:`features.sources.load_market`: spot klines and funding from the dump layout, perp
bars from ``perp_ohlcv/``), plus the daily open interest of ``positioning/`` when present; or
from the synthetic market (:func:`features.synthetic.generate_market`) when there is no data.

At simulated time ``now`` a venue shows a bar once it has closed (``ts + interval <= now``),
plus the bar still forming (``ts <= now < ts + interval``) as a flat bar at its open with no
volume, as real venues include the current bar; a funding event once it has settled; open
interest once known. Data faults (:mod:`features.emulator.faults`) change what is shown.
"""

from __future__ import annotations

import gzip
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from contracts.timestamps import optional_utc_timestamp, utc_timestamp
from features.bars import interval_to_timedelta
from features.emulator.faults import DataFaults
from features.market import MarketData
from features.sources import load_market

Kind = Literal["spot", "perp"]
Order = Literal["binance", "bybit"]
"""Range semantics: Binance pages oldest-first from ``startTime``; Bybit returns the newest
``limit`` rows of the range, newest first."""

_MS = 1_000_000


@dataclass(frozen=True)
class RangeQuery:
    """A venue request's time range and page size.

    Attributes
    ----------
    start_ms, end_ms
        Inclusive bounds on the row time (epoch ms); ``None`` for open.
    limit
        Most rows answered.
    order
        The venue's paging semantics (:data:`Order`).
    """

    start_ms: int | None
    end_ms: int | None
    limit: int
    order: Order


@dataclass(frozen=True)
class _Series:
    ts_ms: np.ndarray
    frame: pd.DataFrame


class EmulatorMarket:
    """Bars, funding and open interest by asset, indexed for fast time queries.

    Parameters
    ----------
    market
        Spot bars, perp bars and funding.
    open_interest
        ``ts, asset, open_interest, known_ms`` rows (``known_ms``: when the value became
        known); ``None`` takes the perp bars' ``open_interest`` column when there is one.
    source
        Description for the state endpoint and logs.
    """

    def __init__(
        self,
        market: MarketData,
        open_interest: pd.DataFrame | None = None,
        source: str = "",
    ) -> None:
        self.interval = market.interval
        self.step = interval_to_timedelta(market.interval)
        self.step_ms = int(self.step / pd.Timedelta(1, "ms"))
        self.source = source or market.source
        self.spot = _index(market.bars)
        self.perp = _index(market.perp)
        self.funding = _index(market.funding)
        if open_interest is None and "open_interest" in market.perp.columns:
            perp = market.perp.dropna(subset=["open_interest"])
            open_interest = perp[["ts", "asset", "open_interest"]].assign(
                known_ms=_ms(perp["ts"]) + self.step_ms
            )
        self.open_interest = _index(open_interest) if open_interest is not None else {}

    @classmethod
    def from_data(
        cls,
        root: Path,
        start: pd.Timestamp | str,
        end: pd.Timestamp | str,
        assets: list[str] | None = None,
        interval: str = "1h",
    ) -> EmulatorMarket:
        """Load ``[start, end)`` of a data root laid out like ``../shared/data``.

        Raises
        ------
        FileNotFoundError, ValueError
            As :func:`features.sources.load_market` (no dump there, no bars for an asset).
        """
        market, _ = load_market(Path(root), interval, assets, start, end)
        interest = _read_open_interest(
            Path(root), market.assets, optional_utc_timestamp(start), optional_utc_timestamp(end)
        )
        return cls(market, interest, source=f"data:{root} [{start}, {end})")

    @classmethod
    def synthetic(
        cls,
        start: pd.Timestamp | str,
        days: int,
        n_assets: int = 3,
        seed: int = 7,
        interval: str = "1h",
    ) -> EmulatorMarket:
        """The seeded synthetic market over ``days`` days from the bar containing ``start``."""
        from features.synthetic import SyntheticMarketConfig, generate_market

        # The generator's grid starts at the bar containing ``start``.
        first = utc_timestamp(start).floor(interval_to_timedelta(interval))
        config = SyntheticMarketConfig(
            n_assets=n_assets, days=days, seed=seed, interval=interval, start=first
        )
        market = generate_market(config)
        return cls(market, source=f"synthetic(assets={n_assets}, seed={seed}, from {start})")

    # --- queries -------------------------------------------------------------------------

    def symbols(self, kind: Kind) -> list[str]:
        """Symbols with bars of ``kind``."""
        return sorted(self.spot if kind == "spot" else self.perp)

    def span(self) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """First and last spot bar open served."""
        stamps = [s.ts_ms for s in self.spot.values() if len(s.ts_ms)]
        if not stamps:
            return None
        low = min(int(s[0]) for s in stamps)
        high = max(int(s[-1]) for s in stamps)
        return pd.Timestamp(low * _MS, tz="UTC"), pd.Timestamp(high * _MS, tz="UTC")

    def klines(
        self,
        kind: Kind,
        asset: str,
        now_ms: int,
        query: RangeQuery,
        faults: DataFaults,
    ) -> pd.DataFrame:
        """The bars a venue answers with, with a boolean ``forming`` column.

        Returns an empty frame for an unknown asset (the caller decides the error).
        """
        series = (self.spot if kind == "spot" else self.perp).get(asset)
        if series is None:
            return pd.DataFrame()
        ts, step = series.ts_ms, self.step_ms
        close = ts + step
        shown = close <= now_ms
        in_range = _in_range(ts, query)
        frozen = None
        for item in faults.items:
            kind_ = item.fault.kind
            if kind_ == "stale":
                frozen = _ms_of(item.since)
                hidden = shown & (close > frozen)
            elif kind_ == "late_bar":
                late = close > _ms_of(item.injected_at)
                hidden = shown & late & (close + item.fault.delay * 1000 > now_ms)
            elif kind_ == "missing_bar":
                hidden = shown & (ts == _ms_of(item.bar))
            else:
                continue
            if (hidden & in_range).any():
                faults.applied(item)
            shown &= ~hidden
        forming = (ts <= now_ms) & (now_ms < close)
        if frozen is not None:
            forming &= False
        chosen = np.flatnonzero((shown | forming) & in_range)
        chosen = _page(chosen, query)
        out = series.frame.iloc[chosen].copy()
        out["forming"] = forming[chosen]
        if out["forming"].any():
            rows = out["forming"].to_numpy()
            for column in ("high", "low", "close"):
                out.loc[rows, column] = out.loc[rows, "open"]
            for column in (
                "volume",
                "quote_volume",
                "trades",
                "taker_buy_volume",
                "taker_buy_quote_volume",
            ):
                out.loc[rows, column] = 0  # nothing traded yet (0 fits int and float columns)
        for item in faults.items:
            if item.fault.kind == "bad_price":
                hit = (_ms(out["ts"]) == _ms_of(item.bar)) & ~out["forming"].to_numpy()
                if hit.any():
                    out.loc[hit, "close"] = out.loc[hit, "close"] * item.fault.factor
                    faults.applied(item)
        return out.reset_index(drop=True)

    def funding_events(
        self,
        asset: str,
        now_ms: int,
        query: RangeQuery,
        faults: DataFaults,
    ) -> pd.DataFrame:
        """Settled funding events ``ts, funding_rate`` a venue answers with."""
        series = self.funding.get(asset)
        if series is None:
            return pd.DataFrame(columns=["ts", "funding_rate"])
        ts = series.ts_ms
        shown = ts <= now_ms
        for item in faults.items:
            if item.fault.kind == "stale":
                hidden = shown & (ts > _ms_of(item.since))
                if hidden.any():
                    faults.applied(item)
                shown &= ~hidden
        chosen = _page(np.flatnonzero(shown & _in_range(ts, query)), query)
        return series.frame.iloc[chosen].reset_index(drop=True)

    def last_close(self, kind: Kind, asset: str, as_of_ms: int) -> tuple[float, int] | None:
        """Close and open time (ms) of the newest bar closed by ``as_of_ms``."""
        series = (self.spot if kind == "spot" else self.perp).get(asset)
        if series is None:
            return None
        i = int(np.searchsorted(series.ts_ms + self.step_ms, as_of_ms, side="right")) - 1
        if i < 0:
            return None
        return float(series.frame["close"].iloc[i]), int(series.ts_ms[i])

    def last_funding(self, asset: str, as_of_ms: int) -> tuple[float, int] | None:
        """Rate and time (ms) of the newest settled funding event, and ``None`` without one."""
        series = self.funding.get(asset)
        if series is None:
            return None
        i = int(np.searchsorted(series.ts_ms, as_of_ms, side="right")) - 1
        if i < 0:
            return None
        return float(series.frame["funding_rate"].iloc[i]), int(series.ts_ms[i])

    def next_funding_ms(self, asset: str, as_of_ms: int) -> int:
        """Time of the next funding event after ``as_of_ms`` (8-hourly grid past the data)."""
        series = self.funding.get(asset)
        if series is not None:
            i = int(np.searchsorted(series.ts_ms, as_of_ms, side="right"))
            if i < len(series.ts_ms):
                return int(series.ts_ms[i])
        eight_hours = 8 * 3_600_000
        return (as_of_ms // eight_hours + 1) * eight_hours

    def open_interest_at(self, asset: str, as_of_ms: int) -> float | None:
        """The newest open interest known by ``as_of_ms``."""
        series = self.open_interest.get(asset)
        if series is None:
            return None
        known = series.frame["known_ms"].to_numpy()
        i = int(np.searchsorted(known, as_of_ms, side="right")) - 1
        return None if i < 0 else float(series.frame["open_interest"].iloc[i])


def decimal_string(value: object) -> str | None:
    """A float as the shortest string that parses back to the same float; NaN as ``None``.

    Venues send numbers as decimal strings; the shortest round-trip form keeps a value
    served by the emulator bit-identical to the value the dump reader parsed.

    Examples
    --------
    >>> decimal_string(42000.01), decimal_string(float("nan"))
    ('42000.01', None)
    """
    if is_missing(value):
        return None
    return repr(float(value))  # type: ignore[arg-type]


def is_missing(value: object) -> bool:
    """True for ``None`` and NaN."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _index(frame: pd.DataFrame | None) -> dict[str, _Series]:
    if frame is None or frame.empty:
        return {}
    out = {}
    for asset, rows in frame.groupby(frame["asset"].astype(str), sort=True):
        rows = rows.sort_values("ts", kind="stable").reset_index(drop=True)
        out[str(asset)] = _Series(_ms(rows["ts"]), rows)
    return out


def _ms(ts: pd.Series) -> np.ndarray:
    return pd.DatetimeIndex(ts).asi8 // _MS


def _ms_of(ts: pd.Timestamp | None) -> int:
    return 0 if ts is None else int(pd.Timestamp(ts).value // _MS)


def _in_range(ts: np.ndarray, query: RangeQuery) -> np.ndarray:
    inside = np.ones(len(ts), dtype=bool)
    if query.start_ms is not None:
        inside &= ts >= query.start_ms
    if query.end_ms is not None:
        inside &= ts <= query.end_ms
    return inside


def _page(chosen: np.ndarray, query: RangeQuery) -> np.ndarray:
    """Apply a venue's ``limit``: Binance keeps the oldest after a ``startTime`` (else the
    newest); Bybit keeps the newest and answers newest first."""
    limit = query.limit
    if query.order == "bybit":
        return chosen[-limit:][::-1]
    return chosen[:limit] if query.start_ms is not None else chosen[-limit:]


def _read_open_interest(
    root: Path, assets: list[str], start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame | None:
    """Daily open interest from ``positioning/open_interest_1d`` (known at the day's close)."""
    directory = root / "positioning" / "open_interest_1d"
    frames = []
    for asset in assets:
        path = directory / f"{asset}.csv.gz"
        if not path.exists():
            continue
        with gzip.open(path, "rt") as handle:
            rows = pd.read_csv(handle)
        rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
        rows["asset"] = asset
        rows["known_ms"] = _ms(rows["ts"]) + 86_400_000
        if start is not None:
            rows = rows[rows["ts"] >= start - pd.Timedelta(days=2)]
        if end is not None:
            rows = rows[rows["ts"] < end]
        frames.append(rows[["ts", "asset", "open_interest", "known_ms"]])
    if not frames:
        return None
    return pd.concat(frames, ignore_index=True)


__all__ = ["EmulatorMarket", "Kind", "Order", "RangeQuery", "decimal_string", "is_missing"]
