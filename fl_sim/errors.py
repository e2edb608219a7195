"""Errors a user can cause. Each message is one line that says what is wrong and what to do."""


class UserError(Exception):
    """Base of every error caused by a user's input; the CLI prints it and exits with code 2."""


class ConfigError(UserError, ValueError):
    """A configuration key or value is not valid."""


class DataError(UserError):
    """A data set is missing, malformed, or cannot be split as asked."""


class InjectedFault(RuntimeError):
    """A failure injected on purpose by ``faults.*`` (not a bug)."""


class FederationError(UserError):
    """The federation cannot go on (e.g. too few clients returned a usable update)."""


class EngineStopped(RuntimeError):
    """Flower's Simulation Engine, which runs the clients, stopped before the run ended."""
