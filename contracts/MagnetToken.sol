// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MAGNET reward token
/// @notice A plain OpenZeppelin ERC-20. Only the registry that created it can mint, and it mints
///         only when a miner's claim proves a receipt posted on chain.
contract MagnetToken is ERC20 {
    /// @notice The registry allowed to mint (set once, at construction).
    address public immutable minter;

    /// @dev Raised when anyone but the registry calls `mint`.
    error OnlyMinter(address caller);

    constructor(address minter_) ERC20("Magnet", "MAG") {
        minter = minter_;
    }

    /// @notice Mint `amount` to `to`; registry only.
    function mint(address to, uint256 amount) external {
        if (msg.sender != minter) revert OnlyMinter(msg.sender);
        _mint(to, amount);
    }
}
