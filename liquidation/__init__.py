"""Rule-based liquidation core: margin, oracle guard, waterfall, insurance fund, ADL.

Deterministic and event-sourced; depends only on the standard library and numpy, and reads
risk parameters as plain RiskSnapshot v1 dicts. Start at :class:`liquidation.engine.Engine`.
"""
