"""Allow ``python -m streams`` as an alias of the ``micromoment`` command."""

from streams.cli import main

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
