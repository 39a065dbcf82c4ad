"""Glue shared by the services: settings, the Redis bus, middleware, logging, metrics."""
