"""Helpers the tests share, one definition each: `http` calls the function entry points as the
host does, `runs` starts runs and reads what they recorded."""
