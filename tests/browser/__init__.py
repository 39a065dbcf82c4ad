"""Browser tests: Playwright (sync API) driving Debian's chromium; `make test-browser` runs them."""
