"""``python -m autopilot`` is the ``autopilot`` console script (:func:`autopilot.cli.main`)."""

from autopilot.cli import main

if __name__ == "__main__":
    main()
