"""Prefect flows: thin orchestration over the tested library functions.

``ingest_flow``, ``features_flow``, ``train_flow``, ``review_flow``, ``publish_flow`` and
``backtest_flow`` are each runnable alone; ``pipeline_flow`` runs them in order. Import the
flow you need from its module (``pipelines.flows.pipeline`` ...); importing this package
does not import Prefect, so the CLI can set up the offline environment first.
"""
