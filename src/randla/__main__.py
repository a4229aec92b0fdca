"""``python -m randla``: the same as the ``randla`` command."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
