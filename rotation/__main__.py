"""`python -m rotation`: the `rotation` command without its console script."""

from rotation.doors.cli import main

if __name__ == "__main__":
    main(prog_name="rotation")
