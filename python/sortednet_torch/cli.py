"""What the package's command-line entry points share: an expected error is one line and an exit code, never a traceback."""

import sys


def run_command(action, errors, prefix="error", code=2):
    """Runs `action`, which returns the line to print; one of `errors` prints `prefix: message` to stderr and returns `code`."""
    try:
        line = action()
    except errors as e:
        print(f"{prefix}: {e}", file=sys.stderr)
        return code
    print(line)
    return 0
