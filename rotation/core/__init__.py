"""Decisions and the run: policy, planning, renewal, reconcile, sweep."""
