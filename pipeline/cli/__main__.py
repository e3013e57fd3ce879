"""``python -m pipeline.cli``: the ``recsys`` command line without the console script."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
