"""Error types that the command line turns into one-line messages and exit status 2."""


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
