"""Runs the Python `openfeature-provider-flagd` against a flagd-compatible daemon and prints one JSON line per check.

Used by `daemon/tests/it/clients.rs`, which owns the flag file and the expected results; this program only
evaluates and reports, it asserts nothing itself. Works with the current provider (which calls
`flagd.evaluation.v2`) and with 0.2.7 (which calls `flagd.evaluation.v1`).

Protocol on stdout (one JSON object per line):
  {"check": NAME, "value": ..., "variant": ..., "reason": ..., "error_code": ...}  for every check below,
  {"event": "ready"}    after the initial checks (events seen so far are forgotten); the caller then edits the
                        flag file and writes a line to stdin,
  {"check": "change-event", "flags_changed": [...], "value": ...}   once a configuration-change event naming
                        `change-flag` arrived and `change-flag` evaluates to its new value,
  {"event": "done"}     at the end (exit code 0).
On a timeout it prints {"event": "timeout", "waiting_for": ...} and exits with code 3.
"""

import argparse
import json
import os
import sys
import threading
import time

from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import CacheType, ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent

# (check name, evaluation method, flag key, code default, targeting key, context attributes)
CHECKS = [
    ("boolean", "boolean", "bool-flag", False, None, {}),
    ("string", "string", "string-flag", "code-default", None, {}),
    ("integer", "integer", "int-flag", 0, None, {}),
    ("float", "float", "float-flag", 0.0, None, {}),
    ("object", "object", "object-flag", {}, None, {}),
    ("targeting-match", "string", "targeted-flag", "code-default", None, {"email": "admin@example.com"}),
    ("targeting-default", "string", "targeted-flag", "code-default", None, {"email": "someone@example.org"}),
    ("fractional-red", "string", "fractional-flag", "code-default", "user-9", {}),
    ("fractional-blue", "string", "fractional-flag", "code-default", "user-2", {}),
    ("disabled", "string", "disabled-flag", "code-default", None, {}),
    ("missing", "boolean", "missing-flag", True, None, {}),
    ("type-mismatch", "boolean", "string-flag", True, None, {}),
    ("static-context", "string", "tier-flag", "code-default", None, {}),
    ("before-change", "string", "change-flag", "code-default", None, {}),
]


def emit(obj):
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def text(value):
    """Reason and error code may be enums or plain strings depending on the SDK version."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def evaluate(client, method, key, default, targeting_key, attributes):
    context = EvaluationContext(targeting_key=targeting_key, attributes=attributes)
    getter = getattr(client, f"get_{method}_details")
    details = getter(key, default, context)
    return {
        "value": details.value,
        "variant": details.variant,
        "reason": text(details.reason),
        "error_code": text(details.error_code),
        "error_message": details.error_message,
    }


def arm_timeout(seconds, state):
    def fire():
        emit({"event": "timeout", "waiting_for": state["waiting_for"]})
        os._exit(3)

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=["rpc", "in-process", "file"], required=True)
    parser.add_argument("--flags", required=True, help="path of the flag file (used by --mode file)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds before giving up")
    parser.add_argument("--deadline-ms", type=int, default=None, help="per-call deadline (provider default if absent)")
    parser.add_argument("--tls", action="store_true", help="connect over TLS (provider option tls=True)")
    parser.add_argument("--cert-path", default=None, help="PEM of the CA to trust with --tls (provider cert_path)")
    args = parser.parse_args()

    state = {"waiting_for": "provider ready"}
    arm_timeout(args.timeout, state)

    events = []
    events_lock = threading.Lock()

    def on_change(details):
        with events_lock:
            events.append(list(details.flags_changed or []))

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)

    resolver = {
        "rpc": ResolverType.RPC,
        "in-process": ResolverType.IN_PROCESS,
        "file": ResolverType.FILE,
    }[args.mode]
    options = {"host": args.host, "port": args.port, "resolver_type": resolver, "cache": CacheType.DISABLED}
    if args.mode == "file":
        options["offline_flag_source_path"] = args.flags
    if args.deadline_ms is not None:
        options["deadline_ms"] = args.deadline_ms
    if args.tls:
        options["tls"] = True
    if args.cert_path is not None:
        options["cert_path"] = args.cert_path
    provider = FlagdProvider(**options)
    api.set_provider_and_wait(provider)
    client = api.get_client()

    for name, method, key, default, targeting_key, attributes in CHECKS:
        state["waiting_for"] = f"check {name}"
        result = evaluate(client, method, key, default, targeting_key, attributes)
        result["check"] = name
        emit(result)

    # Forget the events of the initial load before announcing readiness: the caller edits the file only after
    # "ready", so every event from now on may be the edit's (and it can arrive before the stdin line does).
    with events_lock:
        events.clear()
    emit({"event": "ready"})
    state["waiting_for"] = "a line on stdin (the caller's signal that the flag file was edited)"
    sys.stdin.readline()

    state["waiting_for"] = "a configuration-change event naming change-flag, then its new value"
    while True:
        with events_lock:
            announced = sorted({key for changed in events for key in changed})
        if "change-flag" in announced:
            result = evaluate(client, "string", "change-flag", "code-default", None, {})
            if result["value"] != "before":
                result["check"] = "change-event"
                result["flags_changed"] = announced
                emit(result)
                break
        time.sleep(0.05)

    emit({"event": "done"})
    sys.stdout.flush()
    # The provider's background threads (streams, retries) must not keep the process alive.
    os._exit(0)


if __name__ == "__main__":
    main()
