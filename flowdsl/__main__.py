"""``python -m flowdsl``: the flowdsl command line (see `flowdsl.cli`)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="python -m flowdsl")
