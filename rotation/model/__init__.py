"""Values: ids, events and the shapes everything else passes around. Imports nothing above it."""
