"""One command being planned: a fork of the engine state, its events so far, market views.

A command validates its arguments, then plans its events on a :class:`Transaction`: each
:meth:`Transaction.emit` folds the event into the fork (the very fold a replay uses), so later
steps of the plan see the effect of earlier ones, and checks made after planning see the
exact state the command would leave. Nothing touches the live state until the engine persists
the whole batch in one store transaction and folds it (:func:`liquidation.state.apply_command`).
A failed check raises and the transaction is simply dropped.

:meth:`Transaction.savepoint` forks the fork, to try a step (a counterparty taking a fill) and
:meth:`Transaction.adopt` it only if it passes.
"""

from __future__ import annotations

from typing import Any

from liquidation.config import EngineConfig
from liquidation.events import Event
from liquidation.state import EngineState, apply_event
from liquidation.valuation import MarketView, market_view


class Transaction:
    """The events of one command, folded into a private fork of the state as they are emitted.

    Parameters
    ----------
    state : EngineState
        The live state (only read; the transaction works on ``state.fork()``).
    config : EngineConfig
    ts : int
        The command's time (epoch ms); every event carries it.
    """

    def __init__(self, state: EngineState, config: EngineConfig, ts: int) -> None:
        self.config = config
        self.ts = ts
        self.state = state.fork()
        self.events: list[Event] = []
        self._cmd = state.n_commands
        self._view: MarketView | None = None

    def emit(self, kind: str, data: dict[str, Any]) -> Event:
        """Append an event to the plan and fold it into the fork."""
        event = Event(self.state.n_events, self.ts, kind, data, cmd=self._cmd, last=False)
        apply_event(self.state, event)
        self.events.append(event)
        self._view = None
        return event

    def view(self) -> MarketView:
        """Margin inputs of every asset at the command's time, on the planned state."""
        if self._view is None:
            self._view = market_view(self.state.assets, self.config, self.ts, self.state.options)
        return self._view

    def savepoint(self) -> Transaction:
        """A child transaction on a fork of this plan; :meth:`adopt` keeps what it emitted."""
        child = Transaction.__new__(Transaction)
        child.config, child.ts, child._cmd = self.config, self.ts, self._cmd
        child.state = self.state.fork()
        child.events = []
        child._view = self._view
        return child

    def adopt(self, child: Transaction) -> None:
        """Make a savepoint's plan part of this one."""
        self.state = child.state
        self.events.extend(child.events)
        self._view = None

    def finish(self, key: str | None) -> list[Event]:
        """The planned events as one command: the key on the first, ``last`` on the final."""
        n = len(self.events)
        return [
            Event(e.seq, e.ts_ms, e.kind, e.data, e.cmd, i == n - 1, key if i == 0 else None)
            for i, e in enumerate(self.events)
        ]
