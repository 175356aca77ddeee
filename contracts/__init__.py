"""Shared contracts of dynamargin: the Forecast frame, UTC time and atomic file writes.

Every package of the project may import this one; it imports nothing of ours and needs only
the standard library, numpy and pandas, so the liquidation core stays free of ML.

- :mod:`contracts.forecast`: the Forecast contract (columns, invariants, validation).
- :mod:`contracts.timestamps`: how a time becomes a tz-aware UTC time.
- :mod:`contracts.files`: writing a file so that a reader never sees half of it.
- :mod:`contracts.errors`: the errors raised here.
"""
