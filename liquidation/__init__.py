"""Rule-based liquidation core: a matched book with a liquidity vault, margin, the oracle guard,
the waterfall (insurance fund, backstop vault, ADL, socialized loss), event-sourced and atomic.

Deterministic; depends only on the standard library and numpy, and reads risk parameters as
plain RiskSnapshot v1 dicts. Every rule lives once in :mod:`liquidation.rules`; the engine
(:class:`liquidation.engine.Engine`, one event at a time) and the historical replay
(:func:`liquidation.simulate.simulate`, every position of a bar at once) both call it.
"""
