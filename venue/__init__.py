"""The venue: the liquidation core run as a long-lived service on what dynamargin serves.

It polls ``/v1/risk`` (:mod:`venue.risk_api`), admits only snapshots whose signatures verify
against the pinned key and that are fresh and in order (:mod:`venue.snapshot_gate`), takes
oracle prices from a price feed (:mod:`venue.price_feed`), and drives
:class:`liquidation.engine.Engine` one tick at a time (:mod:`venue.service`). What it does
is visible on a read-only HTTP endpoint and in Prometheus metrics (:mod:`venue.status_http`,
:mod:`venue.metrics`).
"""
