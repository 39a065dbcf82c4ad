"""The wallet service: pages, the browser wallet's JSON API, the faucet; and the CLI wallet."""
