"""The one error type for bad user input, and how a command line reports it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")


class InputError(ValueError):
    """Bad user input: names the file, the key or line, and what is wrong and what is allowed.

    Its message is the one line a command prints (after ``error: ``) before it exits with code 2.
    """

    def __init__(self, file: object, key: object, message: str) -> None:
        # One line whatever the input holds: a key or value with a newline or control characters is quoted.
        self.file, self.key = _printable(str(file)), _printable(str(key))
        self.message = " ".join(message.splitlines())
        super().__init__(f"{self.file}: {self.key}: {self.message}")


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


def exit_on_input_error(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a CLI entry point: an InputError becomes one line on stderr and exit code 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except InputError as err:
            sys.stderr.write(f"error: {err}\n")
            sys.exit(2)

    return wrapper


class OneLineParser(argparse.ArgumentParser):
    """argparse with the project's one-line errors: ``error: command line: arguments: <message>``, exit 2.

    Abbreviated flags are refused (``--beam 5`` is not taken for ``--beam-size 5``).
    """

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise InputError("command line", "arguments", message)
