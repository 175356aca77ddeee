"""Level-2 order-book features from a raw Binance USDT-M websocket capture.

One module per job, used in this order::

    from features.l2.agreement import book_ticker_agreement, book_ticker_frame
    from features.l2.book import book_frame
    from features.l2.capture import parse_capture
    from features.l2.ofi import aggregate_ofi, order_flow_imbalance
    from features.l2.vpin import trade_vpin, trades_frame

    events = list(parse_capture(lines))        # typed events, in arrival order
    book = book_frame(events, depth=10)        # top-N book after every applied diff
    ofi = order_flow_imbalance(book)           # Cont-Kukanov-Stoikov OFI per event, per level
    per_second = aggregate_ofi(ofi, "1s")      # bucketed, labelled by bucket open
    vpin = trade_vpin(trades_frame(events), bucket_volume=5.0, window=50)
    agreement = book_ticker_agreement(book, book_ticker_frame(events))

- :mod:`features.l2.capture`: ``<local_ns> <raw JSON>`` lines -> typed events.
- :mod:`features.l2.book`: book reconstruction (:class:`~features.l2.book.OrderBook`,
  :func:`~features.l2.book.book_frame`) and its sequence rules.
- :mod:`features.l2.ofi`: order flow imbalance per event and per time bucket.
- :mod:`features.l2.vpin`: trades as a frame and trade-level VPIN.
- :mod:`features.l2.agreement`: reconstructed best prices against the exchange's bookTicker.

Everything works on any iterable of capture lines (a file, a socket reader, a test list).
Times: ``ts`` columns are the exchange *transaction time* ``T`` (UTC, ms precision);
``local_ns`` is the capture host's receive time.
"""
