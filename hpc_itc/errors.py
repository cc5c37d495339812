"""Error types that the command line turns into one-line messages and exit status 2.

Two kinds, one per layer:

* :class:`InvalidInput` is what the core raises for a value it cannot work with (a model
  file, a LOBSTER folder, a structure, an argument).  It names the value the core's way
  (``subject``: "model", "lobster_dir", "n_cells_left"), not by an input key: the core
  does not know the TOML.
* :class:`InputError` names the input key (``structure.n_cells_left``) or command-line
  argument.  Config raises it; a stage or tool that hands a setting to the core wraps the
  call in :func:`keyed`, which turns the core's subject into that key.

Both print as ``error: <key or subject>: <what is allowed>`` (:func:`message_line`).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping


class InputError(Exception):
    """A problem with what the user gave us (input file, model file, data file).

    ``key`` names the offending input key (dotted TOML path such as
    ``structure.n_cells_left``) or the argument; the message says what is allowed.
    The CLI prints ``error: <key>: <message>`` on one line and exits with status 2.
    """

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


class ResultsMismatchError(InputError):
    """The results file was written from a different input."""


class InvalidInput(ValueError):
    """Raised by the core: ``subject`` (the core's name of the value) cannot be used; ``message`` says what is allowed."""

    def __init__(self, subject: str, message: str):
        super().__init__(f"{subject}: {message}")
        self.subject = subject
        self.message = message


@contextmanager
def keyed(keys: str | Mapping[str, str]) -> Iterator[None]:
    """Re-raise the core's :class:`InvalidInput` as an :class:`InputError` naming the input key.

    ``keys``: one key for whatever the block raises, or a map subject -> key (a subject not in
    the map keeps its own name, e.g. a folder given on the command line).
    """
    try:
        yield
    except InvalidInput as exc:
        key = keys if isinstance(keys, str) else keys.get(exc.subject, exc.subject)
        raise InputError(key, exc.message) from None


def one_line(text: Any, limit: int = 160) -> str:
    """``text`` (e.g. an exception) on one line, at most ``limit`` characters."""
    s = " ".join(str(text).split())
    return s if len(s) <= limit else s[: limit - 3] + "..."


def message_line(exc: InputError | InvalidInput) -> str:
    """The one line printed on stderr for a bad input."""
    key = exc.key if isinstance(exc, InputError) else exc.subject
    return f"error: {key}: {exc.message}"
