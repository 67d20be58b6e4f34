"""Wait for servers, then run a command: how the stack's services start (infra/compose.yaml), and
how `make stack` knows the stack is up.

    python -m infra.wait [--seconds N] TARGET... [-- COMMAND...]

A TARGET is a URL that must answer 200 (http://prefect:4200/api/health), or a PostgreSQL URL
(postgresql+psycopg2://USER:PASSWORD@HOST:PORT/DATABASE) that must accept its credentials. A
server that never answers, or a credential it refuses, ends this in one line naming it (status 1);
otherwise COMMAND replaces this process.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

# PostgreSQL's answers that waiting will not change.
REFUSALS = ("password authentication failed", "does not exist", "no pg_hba.conf entry")


def described(url: str) -> str:
    """`url` without its password: what a line may print."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()


def answers(url: str) -> str | None:
    """None once `url` is ready; else why not. A refusal that waiting cannot cure raises SystemExit."""
    if url.startswith("postgresql"):
        import psycopg2

        parts = urlsplit(url)
        try:
            psycopg2.connect(
                host=parts.hostname,
                port=parts.port or 5432,
                user=parts.username,
                password=parts.password,
                dbname=parts.path.lstrip("/"),
                connect_timeout=3,
            ).close()
        except psycopg2.OperationalError as error:
            reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
            if any(refusal in reason for refusal in REFUSALS):
                raise SystemExit(f"wait: PostgreSQL at {described(url)} refuses: {reason}") from None
            return reason
        return None
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return None if response.status == 200 else f"status {response.status}"
    except urllib.error.HTTPError as error:
        return f"status {error.code}"
    except OSError as error:
        return str(getattr(error, "reason", error))


def wait(targets: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    for target in targets:
        print(f"wait: {described(target)}", flush=True)
        while (reason := answers(target)) is not None:
            if time.monotonic() > deadline:
                raise SystemExit(f"wait: {described(target)} did not answer within {seconds:.0f} s ({reason})")
            time.sleep(1)
        print(f"wait: {described(target)} answers", flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[argv.index("--") + 1 :] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="python -m infra.wait", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="an http(s) URL or a postgresql URL")
    parser.add_argument("--seconds", type=float, default=300, help="how long to wait in all (default 300)")
    args = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    wait(args.targets, args.seconds)
    if command:
        os.execvp(command[0], command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
