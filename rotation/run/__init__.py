"""The run of one key: gather, decide, plan, apply in waves, renew; and its intake (submit)."""
