"""Entry points: Event Grid intake, queue worker, HTTP API, replay, command line."""

# The most audit records one page holds, the same at every door: CLI `--top`, HTTP `top`.
MAX_AUDIT_TOP = 1000
