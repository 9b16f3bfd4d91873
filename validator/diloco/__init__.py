"""DiLoCo on the validator side: the round manager, Gauntlet-style scoring, copy detection and the
outer Nesterov merge. `rounds.DilocoValidator` is the object a service drives; `rounds.run_rounds`
runs whole rounds in one process (tests, bench, devnet). docs/DILOCO.md describes the rules.
"""
