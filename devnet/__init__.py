"""The devnet: the whole system on one machine (embedded chain, one validator, N miners, real tasks).

``devnet.network`` wires the parts into node cores; ``devnet.run`` drives tasks to claimed rewards;
``devnet.show`` prints progress and the results. ``magnet devnet`` (node/cli/devnet_cmd.py) is the
command; docs/DEVNET.md explains it.
"""
