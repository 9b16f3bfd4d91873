// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {MagnetToken} from "./MagnetToken.sol";

/// @title MAGNET validator registry, epoch roots and reward claims
/// @notice
/// * Validators register with a stake in the native currency, add to it, request an unstake and
///   withdraw it after `unstakeDelay` seconds. The owner (governance) can remove a validator: it can
///   no longer post and its whole stake becomes withdrawable after the delay.
/// * Time is cut into epochs of `epochLength` seconds from `genesis` (the deploy time). During
///   epoch e + 1 each registered validator may post ONE record for epoch e: a Merkle root over leaves
///   keccak256(bytes.concat(keccak256(abi.encode(index, receiptHash, payout, amount)))) (OpenZeppelin
///   sorted-pair tree; `index` numbers the leaves 0..n-1), the hash of its published epoch file, and
///   the sum of the leaf amounts. The cost of a post does not depend on the number of leaves.
/// * Claimed leaves are bits in a bitmap per (epoch, validator), 256 leaves to a storage word (as
///   Uniswap's MerkleDistributor): only the first claim in a word pays for a new storage slot.
/// * Each epoch's emission is split between the validators that posted for it, pro rata to the stake
///   each held when it posted (counted in whole gwei). Claims open once the posting window has closed (epoch e + 2), when
///   the split is final. A leaf of amount `a` in a post of total `T` pays a * share / T tokens,
///   where share = emission * stake / (stake of every poster); a validator alone, whose leaf
///   amounts sum to the emission, pays exactly the leaf amounts.
/// * Anyone may submit a claim (a relayer or the validator can pay the gas); tokens always go to the
///   payout address inside the leaf. `claimMany` claims several leaves of one post in one transaction.
/// * The registry is the ERC-20 token itself (it inherits MagnetToken): `token()` is this address.
/// Reverts use the custom errors below (decoded to their names by wallet/chain.py).
contract MagnetRegistry is Ownable, MagnetToken {
    struct Validator {
        uint128 stake; // active stake (counts for posts)
        uint128 pending; // requested unstake, withdrawable at `unlockAt`
        uint64 unlockAt;
        bool registered;
        bool removed;
        bool listed; // in `validatorList` (once per address, also after an unstake and a new register)
    }

    // total, claimed and stake share one slot: a claim reads and writes it once (gas).
    struct EpochPost {
        bytes32 root;
        bytes32 epochFileHash;
        uint96 total; // sum of the leaf amounts
        uint96 claimed; // leaf amounts claimed so far
        uint64 stakeGwei; // the validator's stake when it posted, in gwei (the split's weight)
    }

    uint256 public immutable genesis;
    uint256 public immutable epochLength;
    uint256 public immutable emissionPerEpoch;
    uint256 public immutable minStake;
    uint256 public immutable unstakeDelay;

    mapping(address => Validator) public validators;
    /// @dev Every address that ever registered, in order: `validatorPage` reads the set without logs.
    address[] private validatorList;
    mapping(uint256 => mapping(address => EpochPost)) public posts;
    /// @notice Sum of the stakes (in gwei) of the validators that posted for an epoch.
    mapping(uint256 => uint256) public postedStakeGwei;
    /// @dev epoch => validator => word (index / 256) => claimed bits (bit index % 256).
    mapping(uint256 => mapping(address => mapping(uint256 => uint256))) private claimedBitmap;

    event ValidatorRegistered(address indexed validator, uint256 stake);
    event StakeAdded(address indexed validator, uint256 amount, uint256 stake);
    event UnstakeRequested(address indexed validator, uint256 amount, uint256 stake, uint256 unlockAt);
    event Withdrawn(address indexed validator, uint256 amount);
    event ValidatorRemoved(address indexed validator, address indexed by, string reason);
    event EpochPosted(
        uint256 indexed epoch,
        address indexed validator,
        bytes32 root,
        bytes32 epochFileHash,
        uint256 total,
        uint256 stake
    );
    event Claimed(
        uint256 indexed epoch,
        address indexed validator,
        address indexed payout,
        bytes32 receiptHash,
        uint256 tokens
    );

    /// A constructor argument is zero or inconsistent.
    error BadParameter(string name);
    /// The caller is not a registered validator (or was removed).
    error NotValidator(address account);
    /// `register` was called by an already registered validator.
    error AlreadyRegistered(address validator);
    /// Governance removed this validator; it cannot register again.
    error ValidatorIsRemoved(address validator);
    /// The stake sent (or left after an unstake) is below the minimum.
    error StakeTooLow(uint256 stake, uint256 minStake);
    /// A zero amount was given where a positive one is needed.
    error ZeroAmount();
    /// The unstake asks for more than the active stake.
    error UnstakeTooLarge(uint256 requested, uint256 stake);
    /// Nothing is pending withdrawal.
    error NothingToWithdraw();
    /// The pending stake is still locked until `unlockAt`.
    error StillLocked(uint256 unlockAt, uint256 nowTime);
    /// Sending the withdrawn stake failed.
    error TransferFailed();
    /// Only the epoch that just ended (current - 1) can be posted: `epoch` is past or future.
    error EpochNotOpen(uint256 epoch, uint256 currentEpoch);
    /// This validator already posted for this epoch (a replay or a second post).
    error AlreadyPosted(uint256 epoch, address validator);
    /// A post needs a non-zero root and a positive total.
    error EmptyPost();
    /// This validator posted no root for this epoch.
    error NoPost(uint256 epoch, address validator);
    /// Claims for `epoch` open when epoch `opensAt` starts (after the posting window).
    error ClaimNotOpen(uint256 epoch, uint256 opensAt);
    /// The leaf at `index` was already claimed.
    error AlreadyClaimed(uint256 epoch, address validator, uint256 index);
    /// The Merkle proof does not lead to the posted root.
    error InvalidProof();
    /// Claims would exceed the total the validator posted (its leaves do not sum to the total).
    error ExceedsTotal(uint256 claimed, uint256 total);
    /// The payout address is zero.
    error ZeroPayout();
    /// `claimMany` was given no leaves.
    error EmptyBatch();

    /// One leaf of a `claimMany` batch: the arguments of `claim` after `epoch` and `validator`.
    struct Leaf {
        uint256 index;
        bytes32 receiptHash;
        address payout;
        uint256 amount;
        bytes32[] proof;
    }

    constructor(
        address governance,
        uint256 epochLength_,
        uint256 emissionPerEpoch_,
        uint256 minStake_,
        uint256 unstakeDelay_
    ) Ownable(governance) {
        if (epochLength_ == 0) revert BadParameter("epochLength");
        if (minStake_ < 1 gwei) revert BadParameter("minStake"); // stakes weigh in gwei
        genesis = block.timestamp;
        epochLength = epochLength_;
        emissionPerEpoch = emissionPerEpoch_;
        minStake = minStake_;
        unstakeDelay = unstakeDelay_;
    }

    /// @notice The reward token: the registry itself (an ERC-20, see MagnetToken).
    function token() external view returns (address) {
        return address(this);
    }

    // ---- epochs -------------------------------------------------------------------------

    /// @notice The epoch running now: (now - genesis) / epochLength.
    function currentEpoch() public view returns (uint256) {
        return (block.timestamp - genesis) / epochLength;
    }

    /// @notice When `epoch` starts (unix seconds).
    function epochStart(uint256 epoch) external view returns (uint256) {
        return genesis + epoch * epochLength;
    }

    /// @notice Tokens `validator`'s posted total for `epoch` is worth (final once claims open).
    function validatorShare(uint256 epoch, address validator) external view returns (uint256) {
        uint256 stakes = postedStakeGwei[epoch];
        if (stakes == 0) return 0;
        return (emissionPerEpoch * posts[epoch][validator].stakeGwei) / stakes;
    }

    // ---- validators ---------------------------------------------------------------------

    /// @notice Register the caller as a validator with `msg.value` as stake.
    function register() external payable {
        Validator storage v = validators[msg.sender];
        if (v.removed) revert ValidatorIsRemoved(msg.sender);
        if (v.registered) revert AlreadyRegistered(msg.sender);
        if (msg.value < minStake) revert StakeTooLow(msg.value, minStake);
        v.registered = true;
        v.stake = uint128(msg.value); // no chain's native supply comes near 2^128 wei
        if (!v.listed) {
            v.listed = true;
            validatorList.push(msg.sender);
        }
        emit ValidatorRegistered(msg.sender, msg.value);
    }

    /// @notice How many addresses ever registered (the length `validatorPage` pages over).
    function validatorCount() external view returns (uint256) {
        return validatorList.length;
    }

    /// @notice Addresses `start` .. `start + count - 1` of the registration list (fewer at its end),
    ///         each with its active stake: 0 unless registered and not removed. One call reads a page
    ///         of the validator set, so a node needs neither a log scan nor a call per validator.
    function validatorPage(uint256 start, uint256 count)
        external
        view
        returns (address[] memory accounts, uint256[] memory activeStakes)
    {
        uint256 end = validatorList.length;
        if (start > end) start = end;
        if (count < end - start) end = start + count;
        accounts = new address[](end - start);
        activeStakes = new uint256[](end - start);
        for (uint256 i = start; i < end; ++i) {
            address account = validatorList[i];
            Validator storage v = validators[account];
            accounts[i - start] = account;
            activeStakes[i - start] = v.registered && !v.removed ? v.stake : 0;
        }
    }

    /// @notice Add `msg.value` to the caller's stake.
    function addStake() external payable {
        Validator storage v = _activeValidator(msg.sender);
        if (msg.value == 0) revert ZeroAmount();
        v.stake += uint128(msg.value);
        emit StakeAdded(msg.sender, msg.value, v.stake);
    }

    /// @notice Move `amount` of active stake to pending; withdrawable `unstakeDelay` seconds
    ///         after the latest request. Unstaking everything unregisters the caller.
    function requestUnstake(uint256 amount) external {
        Validator storage v = _activeValidator(msg.sender);
        if (amount == 0) revert ZeroAmount();
        if (amount > v.stake) revert UnstakeTooLarge(amount, v.stake);
        uint256 left = v.stake - amount;
        if (left != 0 && left < minStake) revert StakeTooLow(left, minStake);
        v.stake = uint128(left);
        v.pending += uint128(amount);
        v.unlockAt = uint64(block.timestamp + unstakeDelay);
        if (left == 0) v.registered = false;
        emit UnstakeRequested(msg.sender, amount, left, v.unlockAt);
    }

    /// @notice Send the caller's pending stake back once it is unlocked.
    function withdraw() external {
        Validator storage v = validators[msg.sender];
        uint256 amount = v.pending;
        if (amount == 0) revert NothingToWithdraw();
        if (block.timestamp < v.unlockAt) revert StillLocked(v.unlockAt, block.timestamp);
        v.pending = 0; // effects before the call: a re-entrant withdraw finds nothing
        (bool ok, ) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed();
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Governance: remove `validator`. It can no longer post or register; its stake becomes
    ///         withdrawable after the delay. Roots it already posted stay claimable (miners did the work).
    function removeValidator(address validator, string calldata reason) external onlyOwner {
        Validator storage v = _activeValidator(validator);
        v.pending += v.stake;
        v.stake = 0;
        v.registered = false;
        v.removed = true;
        v.unlockAt = uint64(block.timestamp + unstakeDelay);
        emit ValidatorRemoved(validator, msg.sender, reason);
    }

    // ---- epoch roots and claims -----------------------------------------------------------

    /// @notice Post the caller's root for `epoch` (must be currentEpoch() - 1).
    function postEpoch(uint256 epoch, bytes32 root, bytes32 epochFileHash, uint96 total) external {
        Validator storage v = _activeValidator(msg.sender);
        uint256 current = currentEpoch();
        if (epoch + 1 != current) revert EpochNotOpen(epoch, current);
        if (root == bytes32(0) || total == 0) revert EmptyPost();
        EpochPost storage p = posts[epoch][msg.sender];
        if (p.root != bytes32(0)) revert AlreadyPosted(epoch, msg.sender);
        uint64 stakeGwei = uint64(v.stake / 1 gwei);
        p.root = root;
        p.epochFileHash = epochFileHash;
        p.total = total;
        p.stakeGwei = stakeGwei;
        postedStakeGwei[epoch] += stakeGwei;
        emit EpochPosted(epoch, msg.sender, root, epochFileHash, total, v.stake);
    }

    /// @notice Whether the leaf at `index` of `validator`'s root for `epoch` was claimed.
    function isClaimed(uint256 epoch, address validator, uint256 index) external view returns (bool) {
        return (claimedBitmap[epoch][validator][index >> 8] >> (index & 0xff)) & 1 == 1;
    }

    /// @notice Claim the leaf at `index` of `validator`'s root for `epoch`; anyone may call, tokens
    ///         go to `payout`. The index is inside the leaf, so a leaf cannot be claimed under another.
    function claim(
        uint256 epoch,
        address validator,
        uint256 index,
        bytes32 receiptHash,
        address payout,
        uint256 amount,
        bytes32[] calldata proof
    ) external returns (uint256 tokens) {
        if (payout == address(0)) revert ZeroPayout();
        EpochPost storage p = posts[epoch][validator];
        _verify(_openRoot(p, epoch, validator), index, receiptHash, payout, amount, proof);
        if (!_setBit(claimedBitmap[epoch][validator], index)) revert AlreadyClaimed(epoch, validator, index);
        uint256 total = p.total;
        uint256 claimedSoFar = p.claimed + amount;
        if (claimedSoFar > total) revert ExceedsTotal(claimedSoFar, total);
        p.claimed = uint96(claimedSoFar); // <= total, which is a uint96
        tokens = (amount * emissionPerEpoch * p.stakeGwei) / (postedStakeGwei[epoch] * total);
        _pay(epoch, validator, payout, receiptHash, tokens);
    }

    /// @notice Claim several leaves of `validator`'s root for `epoch` in one transaction; anyone may
    ///         call, each leaf's tokens go to its own payout (the same amount `claim` would pay).
    ///         A leaf already claimed (before, or earlier in this batch) is skipped: no tokens, no
    ///         event, counted in `skipped`. Any other fault reverts the whole batch with the error
    ///         `claim` gives: `EmptyBatch`, `NoPost`, `ClaimNotOpen`, `ZeroPayout`, `InvalidProof`,
    ///         `ExceedsTotal`.
    function claimMany(
        uint256 epoch,
        address validator,
        Leaf[] calldata leaves
    ) external returns (uint256 tokens, uint256 skipped) {
        if (leaves.length == 0) revert EmptyBatch();
        EpochPost storage p = posts[epoch][validator];
        Batch memory b = Batch(epoch, validator, _openRoot(p, epoch, validator), 0, 0);
        uint256 total = p.total;
        uint256 claimedSoFar = p.claimed;
        b.weight = emissionPerEpoch * p.stakeGwei;
        b.divisor = postedStakeGwei[epoch] * total;
        mapping(uint256 => uint256) storage bitmap = claimedBitmap[epoch][validator];
        for (uint256 i = 0; i < leaves.length; ) {
            Leaf calldata leaf = leaves[i];
            unchecked {
                ++i;
            }
            if (leaf.payout == address(0)) revert ZeroPayout();
            if (!_setBit(bitmap, leaf.index)) {
                ++skipped;
                continue;
            }
            claimedSoFar += leaf.amount;
            if (claimedSoFar > total) revert ExceedsTotal(claimedSoFar, total);
            tokens += _claimLeaf(b, leaf);
        }
        p.claimed = uint96(claimedSoFar); // <= total, which is a uint96
    }

    /// @dev A batch's post, for `_claimLeaf`: tokens of a leaf = amount * weight / divisor.
    struct Batch {
        uint256 epoch;
        address validator;
        bytes32 root;
        uint256 weight;
        uint256 divisor;
    }

    /// @dev Verify one batch leaf (its bit already set) and pay it; returns its tokens.
    function _claimLeaf(Batch memory b, Leaf calldata leaf) private returns (uint256 paid) {
        _verify(b.root, leaf.index, leaf.receiptHash, leaf.payout, leaf.amount, leaf.proof);
        paid = (leaf.amount * b.weight) / b.divisor;
        _pay(b.epoch, b.validator, leaf.payout, leaf.receiptHash, paid);
    }

    /// @dev The root of a post whose claims are open; reverts NoPost or ClaimNotOpen.
    function _openRoot(EpochPost storage p, uint256 epoch, address validator) private view returns (bytes32 root) {
        root = p.root;
        if (root == bytes32(0)) revert NoPost(epoch, validator);
        if (currentEpoch() < epoch + 2) revert ClaimNotOpen(epoch, epoch + 2);
    }

    /// @dev Set the leaf's bit (one read and one write of its word); false if it was already set.
    function _setBit(mapping(uint256 => uint256) storage bitmap, uint256 index) private returns (bool) {
        uint256 word = bitmap[index >> 8];
        uint256 bit = 1 << (index & 0xff);
        if (word & bit != 0) return false;
        bitmap[index >> 8] = word | bit;
        return true;
    }

    /// @dev Reverts InvalidProof unless the leaf and its proof lead to `root`.
    function _verify(
        bytes32 root,
        uint256 index,
        bytes32 receiptHash,
        address payout,
        uint256 amount,
        bytes32[] calldata proof
    ) private pure {
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(index, receiptHash, payout, amount))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidProof();
    }

    function _pay(uint256 epoch, address validator, address payout, bytes32 receiptHash, uint256 tokens) private {
        _mint(payout, tokens);
        emit Claimed(epoch, validator, payout, receiptHash, tokens);
    }

    function _activeValidator(address account) private view returns (Validator storage v) {
        v = validators[account];
        if (!v.registered) revert NotValidator(account);
    }
}
