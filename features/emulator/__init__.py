"""A local exchange emulator: real (or synthetic) market data served in venues' REST formats.

It stands in for the internet in tests and the demo. ``dynamargin emulate`` runs it; in
Python, :class:`features.emulator.server.EmulatorServer` runs it in a thread. Modules:

- :mod:`~features.emulator.clock`: the simulated, accelerable clock;
- :mod:`~features.emulator.data`: the market it serves, from ``../shared/data`` through the
  dump readers, or from the synthetic market;
- :mod:`~features.emulator.faults`: fault injection per endpoint and asset;
- :mod:`~features.emulator.binance_api`, :mod:`~features.emulator.bybit_api`,
  :mod:`~features.emulator.dump_api`: the venues' formats;
- :mod:`~features.emulator.context`: what every route shares (market, clock, faults);
- :mod:`~features.emulator.app`: the ASGI app and its control endpoints;
- :mod:`~features.emulator.server`: uvicorn in a background thread, on a free port;
- :mod:`~features.emulator.control`: a client for the control endpoints.
"""
