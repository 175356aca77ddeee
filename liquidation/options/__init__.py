"""European options on the perpetuals: Black-76 marks, Greeks, portfolio margin and expiry.

Options are cash-settled in USD on the perpetual (the forward of a Black-76 model), like
Deribit's linear USDC options. The package keeps option positions in their own matched,
event-sourced ledger (:mod:`liquidation.options.ledger`) and margins them together with the
engine's perpetual positions over a joint price x implied-volatility grid
(:mod:`liquidation.options.risk`), whose vol shocks scale with the published sigma forecast.
"""
