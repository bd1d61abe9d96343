"""``python -m dialer``: the same command line as ``dialer``."""

from dialer.cli import main

if __name__ == "__main__":
    main(prog_name="dialer")
