"""The explorer service: the tutorial's Block Scan grown into a live block explorer."""
