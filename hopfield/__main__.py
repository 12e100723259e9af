"""``python -m hopfield ...``: the command line of :mod:`hopfield.cli`."""

from hopfield.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
