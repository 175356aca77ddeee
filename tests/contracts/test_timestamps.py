from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from contracts.errors import NaiveTimeError
from contracts.timestamps import aware_utc, optional_utc_timestamp, utc_datetime, utc_timestamp


def test_a_naive_time_means_utc_and_an_aware_one_is_converted():
    assert utc_timestamp("2024-07-01") == pd.Timestamp("2024-07-01", tz="UTC")
    assert utc_timestamp("2024-07-01T02:00+02:00") == pd.Timestamp("2024-07-01", tz="UTC")
    assert str(utc_timestamp(pd.Timestamp("2024-07-01", tz="Asia/Tokyo")).tz) == "UTC"
    assert optional_utc_timestamp(None) is None
    assert utc_datetime(datetime(2024, 1, 1)) == datetime(2024, 1, 1, tzinfo=UTC)
    plus_two = datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    assert utc_datetime(plus_two) == datetime(2024, 1, 1, tzinfo=UTC)


def test_aware_utc_refuses_a_naive_time_and_names_it():
    with pytest.raises(NaiveTimeError, match="decision time"):
        aware_utc(datetime(2024, 1, 1), "decision time")
    assert aware_utc(pd.Timestamp("2024-01-01T01:00+01:00"), "t") == datetime(
        2024, 1, 1, tzinfo=UTC
    )


def test_an_overflowing_conversion_raises_overflow_error():
    with pytest.raises(OverflowError):
        utc_datetime(datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5))))
