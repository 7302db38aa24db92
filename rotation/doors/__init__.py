"""Entry points: Event Grid intake, queue worker, HTTP API, replay, command line."""
