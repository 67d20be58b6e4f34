"""The progress bar of long work on a transformers model (training epochs, scoring windows)."""

import sys


def progress_bar(total: int, description: str, unit: str, show: bool = True, least: int = 1):
    """A progress bar on standard error: redrawn each second on a terminal, a line every 30 s in
    a log; none for fewer than `least` items."""
    from tqdm.auto import tqdm

    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        mininterval=1 if tty else 30,
        file=sys.stderr,
        disable=not show or total < least,
    )
