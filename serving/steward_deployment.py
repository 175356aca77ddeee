"""Deploy and drive the on-chain consumer: RiskOracle, PerpMarket and MarginSteward.

The contracts are ``RiskOracle`` (Chaos Labs, compiled from the shared peers folder),
``onchain/src/PerpMarket.sol`` (a market holding margin fractions per asset) and
``onchain/src/MarginSteward.sol`` (verifies our EIP-712 signature, enforces bounds, writes
the market). :func:`deploy_stack` deploys all three the way a protocol would;
:func:`apply_from_oracle` / :func:`apply_signed` run the steward and report what it did,
from the transaction's own events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from serving.errors import EvmToolchainError
from serving.evm_chain import DISCARD, EvmChain, checksum
from serving.oracle_encoding import UPDATE_TYPES
from serving.signing import EIP712_TYPES_V2, WAD, risk_parameters_typed_data, to_wad
from serving.solidity_build import Artifacts
from serving.standard import Eip712Domain

IMF: Final[int] = 0
MMF: Final[int] = 1


@dataclass(frozen=True)
class ParameterBounds:
    """Aave-steward-style bounds of one governed parameter (fractions, not WAD).

    Attributes
    ----------
    floor, cap
        Absolute bounds of the applied value.
    max_change
        Largest relative change per update (0.5 = +-50% of the current value).
    min_delay_s
        Seconds between two changes of the parameter.
    clamp
        Out of bounds: clamp into them (True) or reject the whole update (False).
    """

    floor: float
    cap: float
    max_change: float
    min_delay_s: int = 0
    clamp: bool = False

    def as_struct(self) -> tuple[int, int, int, int, bool]:
        """The ``MarginSteward.Bounds`` tuple: (floor, cap, maxChangeBps, minDelay, clamp)."""
        return (
            to_wad(self.floor),
            to_wad(self.cap),
            round(self.max_change * 10_000),
            int(self.min_delay_s),
            bool(self.clamp),
        )


@dataclass(frozen=True)
class StewardConfig:
    """How the steward governs the market (defaults suit the default multiplier policy:
    IMF 5% x multiplier in [0.8, 3])."""

    imf: ParameterBounds = ParameterBounds(floor=0.02, cap=0.5, max_change=0.5)
    mmf: ParameterBounds = ParameterBounds(floor=0.01, cap=0.3, max_change=0.5)
    max_age_s: int = 3600


@dataclass
class Deployment:
    """The deployed contracts (web3 contract objects) and the gas each deployment used."""

    chain: EvmChain
    oracle: Any
    market: Any
    steward: Any
    gas: dict[str, int] = field(default_factory=dict)

    @property
    def domain(self) -> Eip712Domain:
        """The EIP-712 domain publishers must sign under for this deployment."""
        return Eip712Domain(chain_id=self.chain.chain_id, verifying_contract=self.oracle.address)


def deploy_oracle(
    chain: EvmChain, artifacts: Artifacts, senders: Sequence[str] | None = None
) -> tuple[Any, int]:
    """Deploy the RiskOracle with our :data:`UPDATE_TYPES` allowlisted.

    ``senders`` are the authorized pushers (default: the chain's sender).
    """
    pushers = [checksum(s) for s in (senders or [chain.sender])]
    return chain.deploy(artifacts["RiskOracle"], pushers, list(UPDATE_TYPES))


def deploy_stack(
    chain: EvmChain,
    artifacts: Artifacts,
    signers: Sequence[str],
    listings: Mapping[str, tuple[float, float]],
    config: StewardConfig | None = None,
    *,
    oracle: Any = None,
    pushers: Sequence[str] | None = None,
) -> Deployment:
    """Deploy (or reuse) the RiskOracle, then a PerpMarket and its MarginSteward.

    Parameters
    ----------
    signers
        EIP-712 signer addresses the steward accepts.
    listings
        Asset -> starting (IMF, MMF) of the market, as fractions.
    config
        Steward bounds and staleness limit.
    oracle
        An already deployed RiskOracle contract; deployed here when None.
    pushers
        Authorized RiskOracle senders when it is deployed here.
    """
    config = config or StewardConfig()
    gas: dict[str, int] = {}
    if oracle is None:
        oracle, gas["RiskOracle"] = deploy_oracle(chain, artifacts, pushers)
    market, gas["PerpMarket"] = chain.deploy(artifacts["PerpMarket"])
    steward, gas["MarginSteward"] = chain.deploy(
        artifacts["MarginSteward"],
        oracle.address,
        market.address,
        [checksum(s) for s in signers],
        int(config.max_age_s),
    )
    chain.transact(steward.functions.setBounds(IMF, config.imf.as_struct()))
    chain.transact(steward.functions.setBounds(MMF, config.mmf.as_struct()))
    chain.transact(market.functions.setSteward(steward.address))
    for asset, (imf, mmf) in sorted(listings.items()):
        chain.transact(market.functions.list(asset, to_wad(imf), to_wad(mmf)))
    return Deployment(chain, oracle, market, steward, gas)


@dataclass(frozen=True)
class StewardOutcome:
    """What one steward transaction did, from its events.

    Attributes
    ----------
    applied
        True if the market's margin changed to the update (maybe clamped).
    rejection
        The ``UpdateRejected`` reason, if any.
    clamped
        ``(parameter, requested WAD, applied WAD, reason)`` per ``ParameterClamped``.
    gas_used
        Gas of the transaction.
    """

    asset: str
    applied: bool
    rejection: str | None
    clamped: tuple[tuple[str, int, int, str], ...]
    gas_used: int
    tx_hash: str


def apply_from_oracle(
    deployment: Deployment, asset: str, sender: str | None = None
) -> StewardOutcome:
    """The steward reads ``asset``'s six newest RiskOracle records and applies them.

    Raises
    ------
    ContractRevert
        For a forged signature, another chain or feed, an expired, stale or replayed update,
        mixed records or a malformed value (the steward's reason).
    """
    receipt = deployment.chain.transact(
        deployment.steward.functions.applyFromOracle(asset), sender=sender
    )
    return _outcome(deployment, asset, receipt)


def apply_signed(
    deployment: Deployment, snapshot: Mapping[str, Any], sender: str | None = None
) -> StewardOutcome:
    """Relay a signed v2 snapshot to the steward directly (anyone may)."""
    parameters, domain, signature = relay_arguments(snapshot)
    receipt = deployment.chain.transact(
        deployment.steward.functions.applySigned(
            parameters, domain.chain_id, checksum(domain.verifying_contract), signature
        ),
        sender=sender,
    )
    return _outcome(deployment, str(snapshot["asset"]), receipt)


def relay_arguments(snapshot: Mapping[str, Any]) -> tuple[tuple[Any, ...], Eip712Domain, bytes]:
    """``(RiskParameters tuple, its domain, signature bytes)`` of a signed v2 snapshot."""
    eip712 = snapshot["signature"]["eip712"]
    domain = Eip712Domain.model_validate(eip712["domain"])
    message = risk_parameters_typed_data(snapshot, domain)["message"]
    fields = [f["name"] for f in EIP712_TYPES_V2["RiskParameters"]]
    return tuple(message[name] for name in fields), domain, bytes.fromhex(eip712["signature"][2:])


def read_back(deployment: Deployment, asset: str) -> dict[str, Any]:
    """The market's margin of ``asset`` and the steward's record of the last applied update.

    Values are WAD integers; ``*_fraction`` keys give them as floats.
    """
    imf, mmf, updated_at = deployment.chain.view(deployment.market.functions.marginFractions(asset))
    latest = deployment.chain.view(deployment.steward.functions.latest(asset))
    names = (
        "update_id",
        "multiplier",
        "imf",
        "mmf",
        "sigma",
        "var99",
        "es99",
        "published_at",
        "valid_until",
        "applied_at",
        "reference_id",
    )
    record = dict(zip(names, latest, strict=True))
    return {
        "market_imf": int(imf),
        "market_mmf": int(mmf),
        "market_updated_at": int(updated_at),
        "market_imf_fraction": int(imf) / WAD,
        "market_mmf_fraction": int(mmf) / WAD,
        "steward": record,
    }


def _outcome(deployment: Deployment, asset: str, receipt: Any) -> StewardOutcome:
    events = deployment.steward.events
    applied = events.UpdateApplied().process_receipt(receipt, errors=DISCARD)
    rejected = events.UpdateRejected().process_receipt(receipt, errors=DISCARD)
    clamped = events.ParameterClamped().process_receipt(receipt, errors=DISCARD)
    if len(applied) + len(rejected) != 1:
        raise EvmToolchainError(
            f"steward transaction {receipt['transactionHash'].to_0x_hex()} for {asset} emitted "
            f"{len(applied)} applied and {len(rejected)} rejected events; expected one"
        )
    return StewardOutcome(
        asset=asset,
        applied=bool(applied),
        rejection=rejected[0]["args"]["reason"] if rejected else None,
        clamped=tuple(
            (
                e["args"]["parameter"],
                e["args"]["requested"],
                e["args"]["applied"],
                e["args"]["reason"],
            )
            for e in clamped
        ),
        gas_used=int(receipt["gasUsed"]),
        tx_hash=receipt["transactionHash"].to_0x_hex(),
    )
