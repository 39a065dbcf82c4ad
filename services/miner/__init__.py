"""The miner service: mines blocks for its node on all cores, with a status API."""
