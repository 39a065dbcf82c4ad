"""pyBTC's services: ledger, miner, explorer and wallet, and the glue they share (`common`)."""
