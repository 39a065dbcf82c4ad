"""Soak and chaos: three whole nodes under load while processes are killed and links cut.

Not part of the default test run (`make pytest` deselects the `chaos` marker). `make chaos-short`
(CI) runs `test_chaos.py` for PYBTC_CHAOS_SECONDS (default 75); `make chaos` runs
`python -m tests.chaos --seconds 600`, which prints the same figures. See `run` for the steps,
`cluster` for the processes, `driver` for the faults, `load` for the traffic and `invariants`
for what must hold afterwards.
"""
