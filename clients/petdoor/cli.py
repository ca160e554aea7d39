"""Command line: `argos-petdoor --policy policy.yaml --watch /var/lib/camera/snapshots`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from clients.http import ArgosClient, ArgosClientError
from clients.petdoor.audit import AuditLog
from clients.petdoor.door import PetDoor
from clients.petdoor.drivers import CommandDriver, DoorDriver, HttpRelayDriver, LogDriver
from clients.petdoor.policy import PolicyError, check_model, load_policy
from clients.petdoor.retry import Backoff
from clients.petdoor.sources import FileSource, FolderSource, FrameSource, SnapshotSource

log = logging.getLogger("clients.petdoor")
_WAKE_SECONDS = 0.5
_ABANDON_AFTER_SECONDS = 1.0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="argos-petdoor",
        description="Open a pet door for allowed animals seen by a camera, using an Argos server.",
    )
    parser.add_argument("--url", default="http://localhost:3000", help="Argos server base URL")
    parser.add_argument("--model", help="one of the server's models (default: its default)")
    parser.add_argument(
        "--api-key-file",
        type=Path,
        metavar="PATH",
        help="file holding the key for a server that needs infer keys (kept out of the "
        "process list, unlike a flag)",
    )
    parser.add_argument("--policy", type=Path, required=True, help="policy YAML file")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--watch", type=Path, metavar="DIR", help="folder to watch for new images")
    source.add_argument(
        "--file", type=Path, metavar="F", help="image file, re-read whenever it changes"
    )
    source.add_argument("--snapshot-url", metavar="URL", help="camera snapshot URL to poll")
    parser.add_argument(
        "--interval", type=float, default=1.0, help="seconds between polls (default 1)"
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.5,
        help="with --watch, ignore files modified less than this many seconds ago (default 0.5)",
    )
    parser.add_argument("--driver", choices=("log", "command", "http"), default="log")
    parser.add_argument("--open-command", help="command that opens the door (--driver command)")
    parser.add_argument("--close-command", help="command that closes the door (--driver command)")
    parser.add_argument("--relay-url", help="relay URL, `{state}` is replaced (--driver http)")
    parser.add_argument("--relay-method", choices=("GET", "POST"), default="POST")
    parser.add_argument("--relay-open-value", default="on", help="relay state value for open")
    parser.add_argument("--relay-close-value", default="off", help="relay state value for closed")
    parser.add_argument("--audit-log", type=Path, metavar="PATH", help="JSON-lines decision log")
    parser.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="deadline of each network call, in seconds (default 5)",
    )
    parser.add_argument("--retries", type=int, default=2, help="retries of a failed service call")
    parser.add_argument(
        "--once", action="store_true", help="process the frames available now, close the door, exit"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log every decision")
    return parser


def make_driver(args: argparse.Namespace, parser: argparse.ArgumentParser) -> DoorDriver:
    if args.driver == "command":
        if not (args.open_command and args.close_command):
            parser.error("--driver command needs --open-command and --close-command")
        return CommandDriver(args.open_command, args.close_command, timeout=args.timeout)
    if args.driver == "http":
        if not args.relay_url:
            parser.error("--driver http needs --relay-url")
        return HttpRelayDriver(
            args.relay_url,
            method=args.relay_method,
            open_value=args.relay_open_value,
            close_value=args.relay_close_value,
            timeout=args.timeout,
        )
    return LogDriver()


def make_source(args: argparse.Namespace, parser: argparse.ArgumentParser) -> FrameSource:
    if args.watch is not None:
        if not args.watch.is_dir():
            parser.error(f"--watch {args.watch}: not a directory")
        settle = 0.0 if args.once else args.settle
        return FolderSource(args.watch, settle_seconds=settle, skip_existing=not args.once)
    if args.file is not None:
        return FileSource(args.file)
    return SnapshotSource(args.snapshot_url, timeout=args.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `argos-petdoor`; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.interval <= 0 or args.timeout <= 0 or args.retries < 0:
        parser.error("--interval and --timeout must be positive, --retries at least 0")
    try:
        policy = load_policy(args.policy)
    except PolicyError as exc:
        print(f"argos-petdoor: {exc}", file=sys.stderr)
        return 2
    driver = make_driver(args, parser)
    source = make_source(args, parser)
    audit = AuditLog(args.audit_log) if args.audit_log else None
    try:
        api_key = args.api_key_file.read_text().strip() if args.api_key_file else None
    except OSError as exc:
        print(f"argos-petdoor: --api-key-file: {exc.strerror}: {exc.filename}", file=sys.stderr)
        return 2
    with ArgosClient(args.url, timeout=args.timeout, model=args.model, api_key=api_key) as client:
        try:
            check_model(policy, client.model_card())
        except PolicyError as exc:
            print(f"argos-petdoor: {exc}", file=sys.stderr)
            return 2
        except ArgosClientError as exc:
            log.warning("cannot read the model card yet (%s); the door stays closed", exc)
        door = PetDoor(
            source, client, policy, driver, audit=audit, backoff=Backoff(attempts=args.retries + 1)
        )
        try:
            if args.once:
                door.run_once()
            else:
                _run_until_stopped(door, args.interval)
        finally:
            door.shutdown()
    return 0


def _run_until_stopped(door: PetDoor, interval: float) -> None:
    """Run until Ctrl-C or, when running in the main thread, SIGTERM.

    The door loop runs in a thread of its own: the door is shut as soon as the signal
    arrives, and a poll still waiting for the network is abandoned rather than awaited.
    """
    stop = threading.Event()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set()) if in_main else None
    loop = threading.Thread(target=door.run, args=(interval, stop), name="petdoor", daemon=True)
    loop.start()
    try:
        while loop.is_alive() and not stop.wait(_WAKE_SECONDS):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        door.shutdown()
        loop.join(_ABANDON_AFTER_SECONDS)
        if in_main:
            signal.signal(signal.SIGTERM, previous)
