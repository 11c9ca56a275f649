"""What every command line of the project shares; importing it imports no TensorFlow.

* Usage mistakes (a wrong name, a missing input) end with one line on stderr,
  ``PROG: error: WHAT``, and exit status `USAGE_ERROR` (2, like argparse's own usage errors);
  `Parser` is argparse with that one-line error, `fail` prints it, `user_errors` turns the named
  exceptions of a block into it and `removed_on_error` leaves no new output directory behind.
* TensorFlow prints C++ log lines (oneDNN, CUDA, absl) while it is imported and while it sets up
  its devices, before its own logging is initialised, so ``TF_CPP_MIN_LOG_LEVEL`` cannot stop
  them. `native_logs_hidden` sends the process's stderr (file descriptor 2) to /dev/null around
  those steps; ``--verbose`` (`add_verbose`) leaves them shown and lowers the log level to 0.
* `early_parse` lets an entry point run as ``python -m pkg.module`` parse its command line (so
  that ``--help`` and usage errors answer at once) and import TensorFlow quietly before the
  module's own imports pull it in.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from typing import Callable, Iterator, NoReturn, Sequence

USAGE_ERROR = 2
VERBOSE_HELP = "show TensorFlow's C++ log lines (oneDNN, CUDA, absl), hidden by default"


class Parser(argparse.ArgumentParser):
    """argparse with a one-line usage error: ``PROG: error: WHAT (see --help)``, exit status 2."""

    def error(self, message: str) -> NoReturn:
        fail(self.prog, f"{message} (see --help)")


def add_verbose(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    return parser


def report_error(prog: str, message: object) -> int:
    """Print one line ``PROG: error: MESSAGE`` on stderr; returns the exit status (2)."""
    show_native_logs()
    text = " ".join(str(message).split("\n"))
    print(f"{prog}: error: {text}", file=sys.stderr)
    return USAGE_ERROR


def fail(prog: str, message: object) -> NoReturn:
    """`report_error`, then exit with status 2."""
    sys.exit(report_error(prog, message))


@contextlib.contextmanager
def user_errors(prog: str, *errors: type[BaseException]) -> Iterator[None]:
    """Turn ``errors`` raised in the block into `fail` (one line, exit 2)."""
    try:
        yield
    except errors as error:
        fail(prog, error)


@contextlib.contextmanager
def removed_on_error(directory: str) -> Iterator[None]:
    """When the block fails, remove what it created of ``directory`` and its parents (a run refused
    at set-up leaves nothing behind; a directory that existed before is never touched)."""
    created = None
    path = os.path.abspath(directory)
    while not os.path.exists(path):
        created, path = path, os.path.dirname(path)
    try:
        yield
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        raise


# ---------------------------------------------------------------------- TensorFlow's C++ log lines
_saved_stderr: int | None = None
_excepthook = None


def hide_native_logs() -> None:
    """Send file descriptor 2 to /dev/null until `show_native_logs` (an uncaught exception, `fail`
    and the end of the process show it again first, so no traceback is lost)."""
    global _saved_stderr, _excepthook
    if _saved_stderr is not None:
        return
    sys.stderr.flush()
    _saved_stderr = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    _excepthook = sys.excepthook

    def hook(*exc_info):
        show_native_logs()
        (_excepthook or sys.__excepthook__)(*exc_info)

    sys.excepthook = hook


def show_native_logs() -> None:
    global _saved_stderr
    if _saved_stderr is None:
        return
    sys.stderr.flush()
    os.dup2(_saved_stderr, 2)
    os.close(_saved_stderr)
    _saved_stderr = None
    if _excepthook is not None:
        sys.excepthook = _excepthook


@contextlib.contextmanager
def native_logs_hidden(verbose: bool = False) -> Iterator[None]:
    """Hide TensorFlow's C++ log lines inside the block (unless ``verbose``)."""
    if verbose:
        yield
        return
    already = _saved_stderr is not None
    hide_native_logs()
    try:
        yield
    finally:
        if not already:
            show_native_logs()


def set_verbose(verbose: bool) -> None:
    """Log levels of TensorFlow's C++ code and of transformers (before either is imported).

    ``--verbose``: TensorFlow from level 0. Otherwise the packages' level 2 becomes 3 (its
    E-level lines too, e.g. "oneDNN supports DT_HALF only ..."; a real failure still surfaces as a
    Python exception) and transformers' advice (its deprecation of TF classes) is not printed.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        return
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "2":
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def import_tensorflow(verbose: bool = False):
    """Import TensorFlow (and tf_keras), its import-time C++ log lines hidden unless ``verbose``."""
    set_verbose(verbose)
    with native_logs_hidden(verbose or "tensorflow" in sys.modules):
        import tensorflow as tf
        import tf_keras  # noqa: F401  (its import prints through TensorFlow too)
    return tf


def early_parse(make_parser: Callable[[], argparse.ArgumentParser], argv: Sequence[str] | None = None,
                check: Callable[[argparse.Namespace], object] | None = None) -> argparse.Namespace:
    """Parse the command line before the entry module imports TensorFlow; then import it quietly.

    Called as ``if __name__ == "__main__": early_parse(build_parser)`` above the module's heavy
    imports: ``--help`` and usage errors exit here within a second, and TensorFlow's import-time
    log lines are hidden unless ``--verbose``. ``check(args)`` (no TensorFlow either, e.g. building
    the run's config) may raise ValueError / FileNotFoundError: one line, exit 2, just as fast.
    ``main`` parses the same arguments again.
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    if check is not None:
        with user_errors(parser.prog, ValueError, TypeError, FileNotFoundError):
            check(args)
    import_tensorflow(getattr(args, "verbose", False))
    return args
