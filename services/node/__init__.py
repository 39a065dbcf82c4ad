"""The ledger service: validates and stores blocks and transactions, serves the node API."""
