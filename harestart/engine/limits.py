"""How many groups are asked at once: the numbers the command line's options need, without
the thread pools of ``engine.fanout`` (``plan`` imports these, and no thread machinery)."""

from __future__ import annotations

# Groups probed at once by preflight, `status` and `plan --probe` (--preflight-parallel): each
# group's probe makes two calls per node (SSH, MySQL) and one to MHA at once, so 32 groups of 3
# nodes keep ~220 threads waiting on the network; 256 is the most the flag accepts.
PREFLIGHT_PARALLEL = 32
MAX_PREFLIGHT_PARALLEL = 256
