"""Rule-based liquidation core: a matched book with a liquidity vault, margin, the oracle guard,
the waterfall (insurance fund, backstop vault, ADL, socialized loss), event-sourced and atomic.

Deterministic; depends only on the standard library and numpy, and reads risk parameters as
plain RiskSnapshot v1 dicts. Start at :class:`liquidation.engine.Engine`.
"""
