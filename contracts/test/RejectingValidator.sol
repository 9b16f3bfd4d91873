// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {MagnetRegistry} from "../MagnetRegistry.sol";

/// @notice TEST ONLY: a validator contract that refuses native currency, so the registry's
///         `withdraw` hits its TransferFailed path. Never deployed outside tests.
contract RejectingValidator {
    MagnetRegistry public immutable registry;

    constructor(MagnetRegistry registry_) {
        registry = registry_;
    }

    function register() external payable {
        registry.register{value: msg.value}();
    }

    function unstakeAll(uint256 amount) external {
        registry.requestUnstake(amount);
    }

    function withdraw() external {
        registry.withdraw();
    }
}
