"""Variance estimators: the estimator part of a forecaster (EWMA, HAR, GARCH, LightGBM).

Each module holds one family behind the :class:`~models.estimators.base.VarianceForecaster`
contract. Build them through :func:`models.factory.build_forecaster` from a
:class:`~models.spec.ForecasterSpec`, never by class name.
"""
