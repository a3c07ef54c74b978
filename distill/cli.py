"""The ``distill`` command line: one verb per arrow of the pipeline (see DESIGN.md).

Each verb is a thin wrapper: parse options, call the library function, print a summary.
Heavy imports (torch, transformers, onnxruntime) happen inside the verbs so that
``distill --help`` stays instant.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])
console = Console(stderr=True)


def fail(message: str, code: int = 2) -> None:
    """Print a one-line error and exit (no traceback for user errors)."""
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


# --- evaluate / convert (distill core) ---------------------------------------------------

# --- label (teachers) ----------------------------------------------------------------------

# --- aggregate / train / predict (students) ------------------------------------------------

# --- export / bench / report ---------------------------------------------------------------

# --- run (recipes) -------------------------------------------------------------------------


def main() -> None:
    app()


if __name__ == "__main__":
    main()
