"""A connection to an EVM chain: the in-process py-evm chain or a node over JSON-RPC.

:func:`in_process_chain` runs a real EVM (py-evm, the Prague fork) inside this process
through eth-tester, with funded test accounts. Its blocks carry a clock of our choosing
rather than the wall clock: the chain starts at ``start_time`` and each block is one second
after the previous, unless :meth:`EvmChain.advance` jumps ahead. That is how a replay (the
demo publishes as of its market's last bar) runs on chain at the publication's own time.

:func:`rpc_chain` talks to any node by URL; transactions are signed locally with the given
key (``DYNAMARGIN_ORACLE_PUSHER_KEY``) and sent raw.

Every revert becomes :class:`ContractRevert` with the contract's reason, whichever way the
client reports it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

from serving.errors import ContractRevert, EvmToolchainError
from serving.ethereum import preserved_recursion_limit
from serving.solidity_build import CompiledContract

with preserved_recursion_limit():
    from eth_tester import EthereumTester, PyEVMBackend
    from eth_tester.exceptions import TransactionFailed
    from web3 import Web3
    from web3.exceptions import ContractLogicError, TimeExhausted
    from web3.logs import DISCARD
    from web3.middleware import SignAndSendRawMiddlewareBuilder
    from web3.providers.eth_tester import EthereumTesterProvider

__all__ = ["DISCARD", "EvmChain", "in_process_chain", "reverts_as_errors", "rpc_chain"]

IN_PROCESS_GAS_LIMIT: Final[int] = 60_000_000
"""Block gas limit of the in-process chain (twice mainnet's 30M, so a 27M bulk call fits)."""
ENV_PUSHER_KEY: Final[str] = "DYNAMARGIN_ORACLE_PUSHER_KEY"


class _ClockedBackend(PyEVMBackend):
    """py-evm whose next block is always one second after the last (no wall clock)."""

    def __init__(self, start_time: int, gas_limit: int) -> None:
        genesis = PyEVMBackend.generate_genesis_params(
            overrides={"timestamp": start_time, "gas_limit": gas_limit}
        )
        super().__init__(genesis_parameters=genesis)
        self._pin_clock()

    def mine_blocks(self, num_blocks: int = 1, coinbase: Any = None) -> Any:
        hashes = []
        for _ in range(num_blocks):
            hashes.extend(super().mine_blocks(1, coinbase or b"\0" * 20))
            self._pin_clock()
        return tuple(hashes)

    def _pin_clock(self) -> None:
        parent = self.chain.get_canonical_head()
        self.chain.header = self.chain.header.copy(timestamp=parent.timestamp + 1)


@dataclass
class EvmChain:
    """A web3 connection plus what deploying and transacting need.

    Attributes
    ----------
    w3
        The web3 client.
    sender
        Default ``from`` of transactions.
    tester
        The eth-tester of an in-process chain, else None.
    """

    w3: Web3
    sender: str
    tester: EthereumTester | None = None

    @property
    def chain_id(self) -> int:
        return int(self.w3.eth.chain_id)

    @property
    def accounts(self) -> list[str]:
        """Unlocked accounts (the funded test accounts of the in-process chain)."""
        return list(self.w3.eth.accounts)

    def now(self) -> int:
        """Block time of the latest block, Unix seconds (the next block is later)."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def advance(self, seconds: int) -> int:
        """In-process only: the next transaction runs ``seconds`` after the latest block."""
        if self.tester is None:
            raise EvmToolchainError("only the in-process chain can move its clock")
        target = self.now() + max(int(seconds), 1)
        self.tester.time_travel(target)
        return target

    def contract(self, compiled: CompiledContract, address: str) -> Any:
        """A web3 contract object of a deployed contract."""
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=compiled.abi)

    def deploy(
        self, compiled: CompiledContract, *args: Any, sender: str | None = None
    ) -> tuple[Any, int]:
        """Deploy ``compiled`` with constructor ``args``; return the contract and gas used."""
        factory = self.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
        receipt = self.transact(factory.constructor(*args), sender=sender)
        return self.contract(compiled, receipt["contractAddress"]), int(receipt["gasUsed"])

    def transact(
        self,
        call: Any,
        *,
        sender: str | None = None,
        gas: int | None = None,
        on_sent: Callable[[str], None] | None = None,
        timeout_s: float = 120.0,
        simulate: bool = True,
    ) -> Any:
        """Send a contract call or constructor and wait for its receipt.

        Parameters
        ----------
        on_sent
            Called with the transaction hash once the node accepted it (before waiting), so
            a caller can journal it and survive a crash while it is pending.
        simulate
            In process, run the call on the pending block first for the revert reason; a
            caller that just estimated a call without time-dependent checks may skip it.

        Raises
        ------
        ContractRevert
            The call reverts (checked before sending) or the mined transaction failed.
        """
        params: dict[str, Any] = {"from": sender or self.sender}
        if gas is not None:
            params["gas"] = gas
        if self.tester is not None:
            # eth-tester estimates gas in a block stamped with the wall clock, not the chain's
            # own clock: simulate on the pending block instead (same state, same time, the
            # contract's reason on a revert), then send with enough gas; the receipt's
            # gasUsed is what the transaction really used.
            if simulate and hasattr(call, "call"):
                with reverts_as_errors():
                    call.call({"from": params["from"]}, block_identifier="pending")
            params.setdefault("gas", int(self.w3.eth.get_block("latest")["gasLimit"]))
        with reverts_as_errors():
            tx_hash = call.transact(params).to_0x_hex()
        if on_sent is not None:
            on_sent(tx_hash)
        receipt = self.wait(tx_hash, timeout_s)
        if receipt["status"] != 1:
            raise ContractRevert(f"transaction {tx_hash} failed on chain (status 0)")
        return receipt

    def wait(self, tx_hash: str, timeout_s: float = 120.0) -> Any:
        """The receipt of ``tx_hash``, waiting up to ``timeout_s``."""
        try:
            return self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout_s)
        except TimeExhausted as exc:
            raise EvmToolchainError(
                f"transaction {tx_hash} not mined within {timeout_s:.0f} s; run the command "
                "again to resume (it waits for pending transactions first)"
            ) from exc

    def estimate_gas(self, call: Any, *, sender: str | None = None) -> int:
        """Gas a call would use now (reverts raise :class:`ContractRevert`)."""
        with reverts_as_errors():
            return int(call.estimate_gas({"from": sender or self.sender}))

    def view(self, call: Any) -> Any:
        """Result of a view call (reverts raise :class:`ContractRevert`)."""
        with reverts_as_errors():
            return call.call()


@contextmanager
def reverts_as_errors() -> Iterator[None]:
    """Turn the clients' revert exceptions into :class:`ContractRevert` with the reason."""
    try:
        yield
    except (TransactionFailed, ContractLogicError) as exc:
        raise ContractRevert(_reason(exc)) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc.args[0]) if exc.args else str(exc)
    return text.removeprefix("execution reverted: ").strip("'\"") or "reverted without a reason"


def in_process_chain(start_time: int, *, gas_limit: int = IN_PROCESS_GAS_LIMIT) -> EvmChain:
    """A fresh in-process chain whose first block is at ``start_time`` (Unix seconds)."""
    tester = EthereumTester(_ClockedBackend(int(start_time), gas_limit))
    w3 = Web3(EthereumTesterProvider(tester))
    return EvmChain(w3, w3.eth.accounts[0], tester)


def rpc_chain(url: str, private_key: str, *, timeout_s: float = 30.0) -> EvmChain:
    """A node at ``url``; transactions are signed with ``private_key`` (hex) and sent raw.

    Raises
    ------
    EvmToolchainError
        If the node does not answer or the key is malformed.
    """
    from serving.ethereum import Account

    try:
        account = Account.from_key(private_key)
    except (ValueError, TypeError) as exc:
        raise EvmToolchainError(f"the pusher key ({ENV_PUSHER_KEY}) is not a hex key") from exc
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    try:
        w3.eth.chain_id  # noqa: B018 - fail fast on an unreachable node
    except Exception as exc:  # requests/aiohttp raise many types; all mean "no node"
        raise EvmToolchainError(f"no JSON-RPC node answers at {url}: {exc}") from exc
    return EvmChain(w3, account.address, None)


def checksum(address: str) -> str:
    """EIP-55 form of an address."""
    return Web3.to_checksum_address(address)
