"""Golden test vectors of the pyBTC protocol (docs/protocol.md) and the script that makes them."""
