"""Lifecycle benchmark: how fast the SQL state machine moves calls, and whether its per-call costs
stay flat as batches and history grow.

    python bench/lifecycle.py [--quick]

Part 1 (throughput, bench/lifecycle_throughput.py): many batches at once, N client connections
each looping claim_entries(10) -> mark_dispatched -> report_call_status ringing -> ongoing ->
ended, every SQL call its own autocommit transaction, then the same batched; pgbench's
simple-update workload (-N) on the same server is the ceiling. The same lifecycle is also run as
a pgbench script, so that one C client drives both sides, in short runs that alternate with
pgbench -N (the median of the pairs' ratios is the figure, and where each side's backends spent
their time, sampled from pg_stat_activity, is printed).
Part 2 (flat costs, bench/lifecycle_flat.py): the per-call cost of batch_status, claim_entries,
mark_dispatched, the (completing) report_call_status and sweep on a 1k-entry batch with no
history, then again with 1M finished entries and 5M events of history in the tables, and on a
100k-entry batch beside that history. The ratios should stay near 1: these are O(1) / O(live
rows) by design.

Each part runs alone too (python bench/lifecycle_flat.py [--quick]). It prints figures and
asserts nothing about speed. It runs on a fresh embedded PostgreSQL (temp data directory, deleted
afterwards), or on the server named by BATCHCTL_DATABASE_URL, where it creates three scratch
databases and drops them afterwards (the role needs CREATEDB).
"""

from __future__ import annotations

import lifecycle_flat
import lifecycle_throughput
from benchlib import run_parts

if __name__ == "__main__":
    run_parts(__doc__.split("\n\n")[0], [lifecycle_throughput.PART, lifecycle_flat.PART])
