// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title PerpMarket: the smallest perp market whose margin a MarginSteward governs.
/// @notice It holds, per listed asset, the initial and maintenance margin fractions (WAD,
/// 1e18 = 100%) and computes the initial margin of a notional. Only the steward may change
/// them; the owner lists assets and names the steward.
contract PerpMarket is Ownable {
    uint256 public constant WAD = 1e18;

    struct Margin {
        uint256 imf; // initial margin fraction, WAD
        uint256 mmf; // maintenance margin fraction, WAD
        uint256 updatedAt; // block time of the last change
        bool listed;
    }

    address public steward;
    mapping(bytes32 => Margin) private margins; // keccak256(bytes(asset)) => margin

    event MarketListed(string asset, uint256 imf, uint256 mmf);
    event StewardChanged(address steward);
    event MarginChanged(string asset, uint256 imf, uint256 mmf);

    constructor() Ownable(msg.sender) {}

    function setSteward(address newSteward) external onlyOwner {
        steward = newSteward;
        emit StewardChanged(newSteward);
    }

    /// @notice List an asset with its starting margin fractions.
    function list(string calldata asset, uint256 imf, uint256 mmf) external onlyOwner {
        Margin storage m = margins[keccak256(bytes(asset))];
        require(!m.listed, "market: asset already listed");
        _check(imf, mmf);
        margins[keccak256(bytes(asset))] = Margin(imf, mmf, block.timestamp, true);
        emit MarketListed(asset, imf, mmf);
    }

    /// @notice The steward's write: new margin fractions for a listed asset.
    function setMarginFractions(string calldata asset, uint256 imf, uint256 mmf) external {
        require(msg.sender == steward, "market: only the steward sets margin");
        Margin storage m = margins[keccak256(bytes(asset))];
        require(m.listed, "market: asset not listed");
        _check(imf, mmf);
        (m.imf, m.mmf, m.updatedAt) = (imf, mmf, block.timestamp);
        emit MarginChanged(asset, imf, mmf);
    }

    function marginFractions(string calldata asset)
        external
        view
        returns (uint256 imf, uint256 mmf, uint256 updatedAt)
    {
        Margin storage m = margins[keccak256(bytes(asset))];
        require(m.listed, "market: asset not listed");
        return (m.imf, m.mmf, m.updatedAt);
    }

    /// @notice Initial margin a position of `notional` (any unit) must post.
    function initialMargin(string calldata asset, uint256 notional) external view returns (uint256) {
        Margin storage m = margins[keccak256(bytes(asset))];
        require(m.listed, "market: asset not listed");
        return notional * m.imf / WAD;
    }

    function _check(uint256 imf, uint256 mmf) private pure {
        // A fraction above 100% or a maintenance above the initial margin is never valid.
        require(imf > 0 && imf <= WAD, "market: imf outside (0, 1]");
        require(mmf > 0 && mmf <= imf, "market: mmf outside (0, imf]");
    }
}
