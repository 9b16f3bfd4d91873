"""``magnet validator register | stake | unstake | withdraw | status``: a validator's stake on chain.

``validator/cli.py`` owns ``magnet validator`` (run the validator headless). When it has
registered the command, ``register`` hangs these actions under it, optional, so ``magnet
validator`` alone still runs the validator; without it, ``register`` creates the command.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from node.cli.common import Subparsers, out
from node.cli.exitcodes import ExitCode
from wallet.cli_common import (
    add_options,
    chain_client,
    chain_errors,
    format_units,
    load,
    network,
    parse_ether,
    unlock,
)

if TYPE_CHECKING:
    from wallet.registry import Registry


def register(subparsers: Subparsers) -> None:
    existing = subparsers.choices.get("validator")
    if existing is not None:
        groups = [a for a in existing._actions if isinstance(a, argparse._SubParsersAction)]
        if groups:
            add_chain_actions(groups[0])
        else:
            add_chain_actions(
                existing.add_subparsers(
                    dest="validator_action", metavar="ACTION", required=False, parser_class=type(existing)
                )
            )
        return
    parser = subparsers.add_parser(
        "validator",
        help="a validator's registration and stake on chain",
        description="Register as a validator with a stake, add stake, unstake and withdraw.",
    )
    actions = parser.add_subparsers(
        dest="validator_action", metavar="ACTION", required=True, parser_class=type(parser)
    )
    add_chain_actions(actions)


def add_chain_actions(actions: Any) -> None:
    """Add register/stake/unstake/withdraw/status to a ``validator`` command's sub-parsers."""

    def action(name: str, handler: Any, text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = actions.add_parser(name, help=text, description=text)
        add_options(parser)
        parser.set_defaults(handler=handler)
        return parser

    reg = action("register", cmd_register, "register the hot account as a validator with a stake")
    reg.add_argument("--stake", default=None, help="stake in native units (default: [chain] devnet_stake)")
    stake = action("stake", cmd_stake, "add AMOUNT (native units) to the stake")
    stake.add_argument("amount")
    unstake = action("unstake", cmd_unstake, "request AMOUNT back (withdrawable after the delay)")
    unstake.add_argument("amount")
    action("withdraw", cmd_withdraw, "withdraw unstaked funds once unlocked")
    action("status", cmd_status, "registration, stake and pending withdrawal of the hot account")


def _registry(args: argparse.Namespace, sign: bool = True) -> tuple[Registry, str]:
    from wallet.registry import Registry

    config, wallet = load(args)
    profile = network(config)
    signer = unlock(config, wallet) if sign else None
    return Registry(chain_client(config, profile, signer), profile.registry), wallet.hot_address


def cmd_register(args: argparse.Namespace) -> int:
    config, _ = load(args)
    stake = parse_ether(args.stake) if args.stake else parse_ether(str(config.chain.devnet_stake))
    registry, address = _registry(args)
    with chain_errors():
        result = registry.register(stake)
    out(f"{address} registered with {format_units(stake)} staked (block {result.block_number})")
    return int(ExitCode.OK)


def cmd_stake(args: argparse.Namespace) -> int:
    amount = parse_ether(args.amount)
    registry, address = _registry(args)
    with chain_errors():
        registry.add_stake(amount)
        stake = registry.validator(address).stake
    out(f"stake of {address} is now {format_units(stake)}")
    return int(ExitCode.OK)


def cmd_unstake(args: argparse.Namespace) -> int:
    amount = parse_ether(args.amount)
    registry, address = _registry(args)
    with chain_errors():
        registry.request_unstake(amount)
        info = registry.validator(address)
    out(f"{format_units(info.pending)} pending, withdrawable from unix time {info.unlock_at}")
    return int(ExitCode.OK)


def cmd_withdraw(args: argparse.Namespace) -> int:
    registry, address = _registry(args)
    with chain_errors():
        pending = registry.validator(address).pending
        registry.withdraw()
    out(f"withdrew {format_units(pending)} to {address}")
    return int(ExitCode.OK)


def cmd_status(args: argparse.Namespace) -> int:
    registry, address = _registry(args, sign=False)
    with chain_errors():
        info = registry.validator(address)
    state = "removed" if info.removed else ("registered" if info.registered else "not registered")
    out(f"{address}: {state}, stake {format_units(info.stake)}, pending {format_units(info.pending)}")
    return int(ExitCode.OK)
