"""The local host: Azurite launcher, Functions host stand-in, `make serve`."""
