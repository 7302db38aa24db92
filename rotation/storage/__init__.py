"""Table, blob and queue storage: audit trail, ledger, runs, the request queue."""
