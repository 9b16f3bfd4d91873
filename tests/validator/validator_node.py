"""A validator node in its own process, for the SIGKILL tests: the real NodeCore + create_service path.

    python validator_node.py DATA_DIR PROFILE PORT   (the hot key's hex in MAGNET_TEST_VALIDATOR_KEY)

Runs until SIGTERM/SIGINT (or SIGKILL, which is the point). Test settings: loopback p2p on PORT,
second-scale windows, small evaluations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from node.config import Config
from node.core import NodeCore
from wallet.signer import LocalSigner


def main() -> int:
    data_dir, profile, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    config = Config()
    config.node.data_dir = data_dir
    config.node.network = profile
    config.node.stop_timeout = 3.0
    config.p2p.listen_addrs = [f"/ip4/127.0.0.1/tcp/{port}"]
    config.p2p.request_rate, config.p2p.request_burst = 20.0, 40
    v = config.validator
    v.time_scale, v.join_min_s, v.reveal_min_s = 1.0, 10.0, 40.0
    v.ideal_min_pool, v.min_pool_to_start, v.join_retries = 2, 2, 1
    v.eval_workers, v.eval_max_examples, v.tick_s, v.epoch_poll_s = 2, 8, 0.2, 0.5
    v.place_scores, v.reannounce_s = [3.0, 1.5, 0.5], 2.0
    core = NodeCore(config, LocalSigner(bytes.fromhex(os.environ["MAGNET_TEST_VALIDATOR_KEY"])))
    core.plug_in("validator")
    core.start()
    print("validator running", flush=True)
    return core.run_until_signal()


if __name__ == "__main__":
    sys.exit(main())
