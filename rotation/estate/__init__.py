"""The estate as a whole, built on the run: inventory, key pictures, report, retire guard, sweep."""
