"""What every command shares: the program name, exit codes, the one-line CLIError, reading the config."""

from __future__ import annotations

import argparse
import signal
from typing import Any

from inference_service.config import ConfigError, Settings, load_settings

PROG = "inference-service"
EXIT_USAGE = 2
EXIT_STARTUP_FAILURE = 3  # what uvicorn exits with when the app cannot start
EXIT_READER_LEFT = 128 + signal.SIGPIPE  # what a shell reports for a writer whose reader left (`| head`)


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit code 2."""


def settings_from_args(args: argparse.Namespace, **overrides: Any) -> Settings:
    try:
        return load_settings(args.config, **overrides)
    except ConfigError as error:
        raise CLIError(str(error)) from None


# --------------------------------------------------------------------------- serve
