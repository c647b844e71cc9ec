"""Evaluates a fixed list of flags through the Python OFREP provider (openfeature-provider-ofrep) against an
OFREP server and prints one JSON line per evaluation. Used by daemon/tests/it/ofrep_clients.rs.

Usage: ofrep_check.py BASE_URL CHECKS_JSON
CHECKS_JSON is a list of {"kind", "flag", "default", "context"}; kind is boolean|string|integer|float|object.
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def plain(value):
    """An enum's value, or the value itself."""
    return getattr(value, "value", value)


def main() -> None:
    base_url, checks = sys.argv[1], json.loads(sys.argv[2])
    api.set_provider(OFREPProvider(base_url=base_url, timeout=10.0))
    client = api.get_client()
    methods = {
        "boolean": client.get_boolean_details,
        "string": client.get_string_details,
        "integer": client.get_integer_details,
        "float": client.get_float_details,
        "object": client.get_object_details,
    }
    for check in checks:
        context = dict(check.get("context") or {})
        targeting_key = context.pop("targetingKey", None)
        details = methods[check["kind"]](
            check["flag"],
            check["default"],
            EvaluationContext(targeting_key=targeting_key, attributes=context),
        )
        print(
            json.dumps(
                {
                    "flag": check["flag"],
                    "value": details.value,
                    "variant": details.variant,
                    "reason": plain(details.reason),
                    "error": plain(details.error_code),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
