"""One exception type for every user-facing failure, so the CLI and the app can show it without a stack trace."""


class ItdError(Exception):
    """A failure caused by the input (a path, a file, a prompt, a config), with a message meant for the user."""
