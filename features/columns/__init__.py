"""Per-family column builders of the feature matrix, and the catalog they record.

:mod:`features.build` runs the stages; this package defines what the columns are. Each
builder appends ``(spec, values)`` pairs in catalog order to a
:class:`~features.columns.registry.Columns`, so the catalog and the matrix come from the same
code and cannot drift.

- :mod:`~features.columns.config`: :class:`FeatureConfig`, the windows and parameters.
- :mod:`~features.columns.registry`: :class:`FeatureSpec`, the column collector and naming.
- :mod:`~features.columns.inputs`: :class:`AssetInputs` and :class:`MarketContext`.
- :mod:`~features.columns.asset_columns`: stage 1, composing the single-asset families
  (:mod:`~features.columns.volatility_columns`, :mod:`~features.columns.orderflow_columns`,
  :mod:`~features.columns.funding_columns`, :mod:`~features.columns.calendar_columns`,
  and the families of information that arrives ahead of volatility:
  :mod:`~features.columns.stress_columns`, :mod:`~features.columns.activity_columns`,
  :mod:`~features.columns.positioning_columns`, :mod:`~features.columns.event_columns`).
- :mod:`~features.columns.cross_columns`: stage 3, the cross-asset family, with the
  cross-asset lead family (:mod:`~features.columns.lead_columns`).
- :mod:`~features.columns.transforms`: lags, z-scores and log ratios they share.
"""
