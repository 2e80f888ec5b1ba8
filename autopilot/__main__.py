"""``python -m autopilot`` is the ``autopilot`` console script."""

from autopilot.app import main

if __name__ == "__main__":
    main()
