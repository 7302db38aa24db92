"""Helpers the tests share, one definition each: `http` calls the function entry points as the
host does, `commands` runs the CLI, `runs` starts runs and reads what they recorded, `shapes`
reads the shape of a JSON answer. Scenario builders stay in tests/scenarios.py."""
