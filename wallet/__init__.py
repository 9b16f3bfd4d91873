"""MAGNET wallet: keys, EIP-712 receipts, the contracts and the chain client.

Map of the package (each module's docstring says more):

- keys ``keys`` (BIP-39/BIP-44, key import), ``keystore`` (keystore v3, sealed secrets, atomic
  0600 files), ``signer`` (``LocalSigner``: ``address``, ``sign_typed_data``, ``sign_digest``),
  ``walletdir`` (several accounts, hot and payout, change password, export, reveal phrase),
  ``password`` (file / ``MAGNET_PASSWORD`` / secure keyring / prompt);
- receipts ``receipts`` (sign, verify -> signer, ``eth_signTypedData_v4`` export), ``merkle``
  (OpenZeppelin-compatible tree), ``epochs`` (epoch file, ``ReceiptProof``s, proof checks),
  ``receiptbook`` (a node's received receipts and proofs), ``rewards`` (post an epoch, claim);
- chain ``contracts`` (committed ABI + bytecode; sources in /contracts, ``build`` recompiles),
  ``chain`` (``ChainClient``), ``chainerrors`` (decoded reverts and user-facing errors),
  ``registry`` (typed ``MagnetRegistry`` calls, ``deploy``), ``devchain`` (embedded py-evm chain
  as JSON-RPC), ``rpcserver`` (served on 127.0.0.1), ``devnet`` (``start_embedded_chain``: the
  chain, contracts deployed, validators registered and served, in one call), ``events``;
- command line ``cli`` (``magnet wallet ...``), ``cli_validator`` (``magnet validator
  register|stake|unstake|withdraw|status``), ``status`` (the ``magnet status`` section).

Typical use by the other roles::

    devnet = start_embedded_chain([validator_signer])          # devnet: chain + contracts + RPC
    client = ChainClient.from_config(config.chain, profile.rpc_url, signer,
                                     expected_chain_id=profile.chain_id, bus=core.events)
    registry = Registry(client, profile.registry)
    signed = sign_receipt(receipt, profile.domain(), signer)   # validator, per task
    built = EpochFile.build(epoch, signer.address, profile.domain(), receipts)
    post_epoch(registry, built); proof = built.proof_for(receipt, issued_at=now_ms)
    claim_with_proof(registry, proof)                          # miner (or anyone), after e + 2
"""
