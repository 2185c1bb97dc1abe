"""The `actstudy` command (and `python -m actstudy`): commands that train restart once for huge pages first."""

import sys

from actstudy.runtime import restart_with_huge_pages

TRAINING_COMMANDS = ("run", "sweep")  # the report and the listings gain nothing from it


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in TRAINING_COMMANDS:
        restart_with_huge_pages()  # before typer, hydra or torch are imported: the restart costs ~0.1 s
    from actstudy.cli import app

    app()


if __name__ == "__main__":
    main()
