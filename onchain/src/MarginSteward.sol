// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// The RiskOracle's record and reader (ChaosLabsInc/risk-oracle, src/RiskOracle.sol).
interface IRiskOracle {
    struct RiskParameterUpdate {
        uint256 timestamp;
        bytes newValue;
        string referenceId;
        bytes previousValue;
        string updateType;
        uint256 updateId;
        bytes market;
        bytes additionalData;
    }

    function getLatestUpdateByParameterAndMarket(string memory updateType, bytes memory market)
        external
        view
        returns (RiskParameterUpdate memory);
}

interface IPerpMarket {
    function marginFractions(string calldata asset)
        external
        view
        returns (uint256 imf, uint256 mmf, uint256 updatedAt);

    function setMarginFractions(string calldata asset, uint256 imf, uint256 mmf) external;
}

/// @title MarginSteward: applies dynamargin's signed margin updates to a perp market, within bounds.
/// @notice An update is a RiskSnapshot v2 as EIP-712 typed data (`RiskParameters`, values in
/// WAD). It arrives either from the RiskOracle (six records of one snapshot, read with
/// `applyFromOracle`) or relayed by anyone with its signature (`applySigned`). Either way the
/// steward checks, in this order, and reverts with a reason on failure:
///   the domain (chain id, verifying contract), the signer allowlist, expiry, staleness and a
///   strictly increasing update id per market.
/// Then the bounds of each governed parameter (IMF and MMF) in the manner of Aave's risk
/// stewards: an absolute floor and cap, a maximum relative change per update and a minimum
/// delay between changes. Out of bounds, an update is either rejected (event
/// `UpdateRejected`, nothing changes) or clamped (event `ParameterClamped`, then applied),
/// per parameter configuration. A change sooner than the minimum delay is always rejected.
contract MarginSteward is Ownable {
    // ---- the signed message (RiskSnapshot v2, docs: spec/risk-snapshot/) ----

    struct RiskParameters {
        string market; // the asset, e.g. "BTCUSDT"
        uint256 updateId; // the publisher's update id for this market
        uint256 multiplier; // WAD
        uint256 imf; // WAD
        uint256 mmf; // WAD
        uint256 sigma; // WAD, fraction of notional over the horizon
        uint256 var99; // WAD
        uint256 es99; // WAD
        uint256 publishedAt; // Unix seconds
        uint256 validUntil; // Unix seconds
        string status; // "ok", "fallback", "stale" or "halted"
        string referenceId; // "<asset>:<update_id>:<16 hex>", the publication store's key
        bytes32 payloadHash; // keccak256 of the signed canonical JSON
    }

    /// What the RiskOracle's `additionalData` carries: abi.encode of this tuple.
    struct Envelope {
        uint256 version; // ENVELOPE_VERSION
        uint256 chainId; // the EIP-712 domain's chain id
        address verifyingContract; // the EIP-712 domain's verifying contract
        uint256 updateId;
        uint256 publishedAt;
        uint256 validUntil;
        string status;
        bytes32 payloadHash;
        bytes signature; // 65 bytes r || s || v
    }

    uint256 public constant ENVELOPE_VERSION = 2;
    uint256 public constant WAD = 1e18;
    uint256 public constant BPS = 10_000;

    bytes32 public constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 public constant RISK_PARAMETERS_TYPEHASH = keccak256(
        "RiskParameters(string market,uint256 updateId,uint256 multiplier,uint256 imf,uint256 mmf,"
        "uint256 sigma,uint256 var99,uint256 es99,uint256 publishedAt,uint256 validUntil,"
        "string status,string referenceId,bytes32 payloadHash)"
    );
    bytes32 private constant NAME_HASH = keccak256("dynamargin");
    bytes32 private constant VERSION_HASH = keccak256("2");

    // The RiskOracle's update types, one per parameter (see the spec's encoding table).
    string private constant T_MULTIPLIER = "marginMultiplier";
    string private constant T_IMF = "initialMarginFraction";
    string private constant T_MMF = "maintenanceMarginFraction";
    string private constant T_SIGMA = "sigma";
    string private constant T_VAR = "var99";
    string private constant T_ES = "es99";

    // ---- configuration ----

    /// Per governed parameter: Aave-steward-style bounds.
    struct Bounds {
        uint256 floor; // WAD, lowest value ever applied
        uint256 cap; // WAD, highest value ever applied
        uint256 maxChangeBps; // largest change per update, relative to the current value
        uint256 minDelay; // seconds between two changes of the parameter
        bool clamp; // out of bounds: clamp (true) or reject (false)
    }

    uint8 public constant IMF = 0;
    uint8 public constant MMF = 1;

    /// The RiskOracle read by `applyFromOracle`; also the EIP-712 verifying contract, so a
    /// signature names the feed it belongs to.
    IRiskOracle public immutable oracle;
    IPerpMarket public immutable market;
    uint256 public maxAge; // seconds an update may be old when applied (staleness)
    mapping(address => bool) public isSigner;
    Bounds[2] private bounds;

    // ---- state per market (key: keccak256(bytes(asset))) ----

    struct Applied {
        uint256 updateId;
        uint256 multiplier;
        uint256 imf; // as applied (after clamping)
        uint256 mmf; // as applied (after clamping)
        uint256 sigma;
        uint256 var99;
        uint256 es99;
        uint256 publishedAt;
        uint256 validUntil;
        uint256 appliedAt;
        string referenceId;
    }

    mapping(bytes32 => Applied) private applied;
    mapping(bytes32 => uint256[2]) private lastChangeAt;

    event SignerSet(address signer, bool allowed);
    event BoundsSet(uint8 parameter, Bounds bounds);
    event MaxAgeSet(uint256 maxAge);
    event UpdateApplied(string market, uint256 updateId, string referenceId, uint256 imf, uint256 mmf, address signer);
    event ParameterClamped(
        string market, uint256 updateId, string parameter, uint256 requested, uint256 applied, string reason
    );
    event UpdateRejected(string market, uint256 updateId, string reason);

    constructor(IRiskOracle oracle_, IPerpMarket market_, address[] memory signers, uint256 maxAge_)
        Ownable(msg.sender)
    {
        oracle = oracle_;
        market = market_;
        for (uint256 i = 0; i < signers.length; i++) {
            isSigner[signers[i]] = true;
            emit SignerSet(signers[i], true);
        }
        maxAge = maxAge_;
        emit MaxAgeSet(maxAge_);
    }

    // ---- owner ----

    function setSigner(address signer, bool allowed) external onlyOwner {
        isSigner[signer] = allowed;
        emit SignerSet(signer, allowed);
    }

    function setMaxAge(uint256 maxAge_) external onlyOwner {
        maxAge = maxAge_;
        emit MaxAgeSet(maxAge_);
    }

    function setBounds(uint8 parameter, Bounds calldata b) external onlyOwner {
        require(parameter <= MMF, "steward: unknown parameter");
        require(b.floor > 0 && b.floor <= b.cap && b.cap <= WAD, "steward: need 0 < floor <= cap <= 1");
        bounds[parameter] = b;
        emit BoundsSet(parameter, b);
    }

    function boundsOf(uint8 parameter) external view returns (Bounds memory) {
        return bounds[parameter];
    }

    function latest(string calldata asset) external view returns (Applied memory) {
        return applied[keccak256(bytes(asset))];
    }

    // ---- the two ways in ----

    /// @notice Apply the newest update of `asset` published to the RiskOracle.
    /// @return ok true if applied (maybe clamped), false if rejected by a bound (see events).
    function applyFromOracle(string calldata asset) external returns (bool ok) {
        bytes memory key = bytes(asset);
        IRiskOracle.RiskParameterUpdate memory first = oracle.getLatestUpdateByParameterAndMarket(T_MULTIPLIER, key);
        bytes32 ref = keccak256(bytes(first.referenceId));
        RiskParameters memory p;
        p.market = asset;
        p.referenceId = first.referenceId;
        p.multiplier = _value(first);
        p.imf = _record(T_IMF, key, ref);
        p.mmf = _record(T_MMF, key, ref);
        p.sigma = _record(T_SIGMA, key, ref);
        p.var99 = _record(T_VAR, key, ref);
        p.es99 = _record(T_ES, key, ref);

        require(first.additionalData.length >= 11 * 32, "steward: additionalData is not a dynamargin envelope");
        Envelope memory env = abi.decode(first.additionalData, (Envelope));
        require(env.version == ENVELOPE_VERSION, "steward: unknown envelope version");
        p.updateId = env.updateId;
        p.publishedAt = env.publishedAt;
        p.validUntil = env.validUntil;
        p.status = env.status;
        p.payloadHash = env.payloadHash;
        return _apply(p, env.chainId, env.verifyingContract, env.signature);
    }

    /// @notice Apply an update relayed by anyone: the signature is the authority.
    /// @param chainId the chain id of the domain the update was signed under
    /// @param verifyingContract the verifying contract of that domain
    function applySigned(
        RiskParameters calldata p,
        uint256 chainId,
        address verifyingContract,
        bytes calldata signature
    ) external returns (bool ok) {
        return _apply(p, chainId, verifyingContract, signature);
    }

    // ---- EIP-712 (pure, so the spec's test vectors check them) ----

    function domainSeparatorFor(uint256 chainId, address verifyingContract) public pure returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, chainId, verifyingContract));
    }

    function hashRiskParameters(RiskParameters memory p) public pure returns (bytes32) {
        // Two halves keep the stack shallow; abi.encode of static words concatenates, so
        // this equals abi.encode of all fourteen words.
        bytes memory head = abi.encode(
            RISK_PARAMETERS_TYPEHASH, keccak256(bytes(p.market)), p.updateId, p.multiplier, p.imf, p.mmf, p.sigma
        );
        bytes memory tail = abi.encode(
            p.var99,
            p.es99,
            p.publishedAt,
            p.validUntil,
            keccak256(bytes(p.status)),
            keccak256(bytes(p.referenceId)),
            p.payloadHash
        );
        return keccak256(bytes.concat(head, tail));
    }

    function digestFor(RiskParameters memory p, uint256 chainId, address verifyingContract)
        public
        pure
        returns (bytes32)
    {
        return keccak256(
            abi.encodePacked(hex"1901", domainSeparatorFor(chainId, verifyingContract), hashRiskParameters(p))
        );
    }

    /// @notice The signer of `p` under the given domain (address(0) if the signature is invalid).
    function recoverSigner(RiskParameters memory p, uint256 chainId, address verifyingContract, bytes memory sig)
        public
        pure
        returns (address)
    {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digestFor(p, chainId, verifyingContract), sig);
        return err == ECDSA.RecoverError.NoError ? signer : address(0);
    }

    /// @notice A RiskOracle `newValue`: exactly one ABI-encoded uint256 (WAD).
    function decodeValue(bytes memory newValue) public pure returns (uint256) {
        require(newValue.length == 32, "steward: newValue is not one ABI-encoded uint256");
        return abi.decode(newValue, (uint256));
    }

    // ---- internals ----

    function _value(IRiskOracle.RiskParameterUpdate memory r) private pure returns (uint256) {
        return decodeValue(r.newValue);
    }

    function _record(string memory updateType, bytes memory key, bytes32 ref) private view returns (uint256) {
        IRiskOracle.RiskParameterUpdate memory r = oracle.getLatestUpdateByParameterAndMarket(updateType, key);
        // All six records must come from one snapshot, or the signature check would mix them.
        require(keccak256(bytes(r.referenceId)) == ref, "steward: oracle records belong to different snapshots");
        return decodeValue(r.newValue);
    }

    function _apply(RiskParameters memory p, uint256 chainId, address verifyingContract, bytes memory sig)
        private
        returns (bool)
    {
        address signer = _authenticate(p, chainId, verifyingContract, sig);
        // A halted or stale publication carries no new parameters to apply.
        bytes32 status = keccak256(bytes(p.status));
        if (status != keccak256("ok") && status != keccak256("fallback")) {
            return _reject(p, string.concat("status ", p.status, " is not applicable"));
        }
        if (!_applyBounded(p)) return false;
        Applied storage a = applied[keccak256(bytes(p.market))];
        emit UpdateApplied(p.market, p.updateId, p.referenceId, a.imf, a.mmf, signer);
        return true;
    }

    /// Who signed it, for which chain and feed, and is it current; any failure reverts.
    function _authenticate(RiskParameters memory p, uint256 chainId, address verifyingContract, bytes memory sig)
        private
        view
        returns (address signer)
    {
        require(chainId == block.chainid, "steward: signed for another chain id");
        require(verifyingContract == address(oracle), "steward: signed for another verifying contract");
        signer = recoverSigner(p, chainId, verifyingContract, sig);
        require(signer != address(0) && isSigner[signer], "steward: signature is not from an allowed signer");
        require(block.timestamp <= p.validUntil, "steward: update expired");
        require(p.publishedAt <= block.timestamp, "steward: update published in the future");
        require(block.timestamp - p.publishedAt <= maxAge, "steward: update is stale");
        require(
            p.updateId > applied[keccak256(bytes(p.market))].updateId,
            "steward: update id is not above the last applied"
        );
    }

    /// The bounds of each governed parameter, then the write to the market.
    function _applyBounded(RiskParameters memory p) private returns (bool) {
        bytes32 key = keccak256(bytes(p.market));
        (uint256 curImf, uint256 curMmf,) = market.marginFractions(p.market);
        (bool ok, uint256 imf, string memory whyImf) = _bounded(key, IMF, curImf, p.imf);
        if (!ok) return _reject(p, string.concat("imf: ", whyImf));
        (bool okMmf, uint256 mmf, string memory whyMmf) = _bounded(key, MMF, curMmf, p.mmf);
        if (!okMmf) return _reject(p, string.concat("mmf: ", whyMmf));
        if (mmf > imf) return _reject(p, "mmf above imf after bounds");
        // Accepted: only now report clamps, so a rejected update never shows one.
        if (imf != p.imf) emit ParameterClamped(p.market, p.updateId, "imf", p.imf, imf, whyImf);
        if (mmf != p.mmf) emit ParameterClamped(p.market, p.updateId, "mmf", p.mmf, mmf, whyMmf);
        if (imf != curImf) lastChangeAt[key][IMF] = block.timestamp;
        if (mmf != curMmf) lastChangeAt[key][MMF] = block.timestamp;
        _store(key, p, imf, mmf);
        market.setMarginFractions(p.market, imf, mmf);
        return true;
    }

    function _store(bytes32 key, RiskParameters memory p, uint256 imf, uint256 mmf) private {
        Applied storage a = applied[key];
        a.updateId = p.updateId;
        a.multiplier = p.multiplier;
        a.imf = imf;
        a.mmf = mmf;
        a.sigma = p.sigma;
        a.var99 = p.var99;
        a.es99 = p.es99;
        a.publishedAt = p.publishedAt;
        a.validUntil = p.validUntil;
        a.appliedAt = block.timestamp;
        a.referenceId = p.referenceId;
    }

    /// The value to apply for one parameter: (true, value, "") within bounds, (true, clamped,
    /// the bound that binds) when clamped, (false, 0, reason) to reject the whole update.
    function _bounded(bytes32 key, uint8 parameter, uint256 current, uint256 requested)
        private
        view
        returns (bool, uint256, string memory)
    {
        Bounds memory b = bounds[parameter];
        require(b.cap > 0, "steward: bounds not configured");
        if (requested == current) return (true, current, "");
        uint256 changed = lastChangeAt[key][parameter];
        if (changed != 0 && block.timestamp < changed + b.minDelay) {
            return (false, 0, "too soon after the last change");
        }
        uint256 step = current * b.maxChangeBps / BPS;
        uint256 lo = current > step ? current - step : 0;
        uint256 hi = current + step;
        if (!b.clamp) {
            if (requested < b.floor) return (false, 0, "below the floor");
            if (requested > b.cap) return (false, 0, "above the cap");
            if (requested < lo || requested > hi) return (false, 0, "step beyond the maximum relative change");
            return (true, requested, "");
        }
        // Clamp into [max(floor, lo), min(cap, hi)]; the reason names the bound that binds.
        uint256 low = lo > b.floor ? lo : b.floor;
        uint256 high = hi < b.cap ? hi : b.cap;
        if (low > high) return (false, 0, "no value within both the absolute and the relative bounds");
        if (requested < low) return (true, low, low == b.floor ? "floor" : "maximum step down");
        if (requested > high) return (true, high, high == b.cap ? "cap" : "maximum step up");
        return (true, requested, "");
    }

    function _reject(RiskParameters memory p, string memory reason) private returns (bool) {
        emit UpdateRejected(p.market, p.updateId, reason);
        return false;
    }
}
