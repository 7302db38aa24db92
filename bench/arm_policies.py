"""CPU of one ARM call outside the transport: `Arm.get` through the product's own pipeline
(host guard, request id, user agent, ARM's bearer authentication, pacing, tracing, logging) and
answer decoding, over a canned transport that answers at once from memory (no socket, no TLS,
no emulator), so what it prints is the policies' and the client's share, not the network's.

Prints the thread's CPU per call (the minimum of `--rounds`; the machine's load only inflates
it). `--callgrind`: run under `valgrind --tool=callgrind` for instruction counts, which the load
does not move; the counters are zeroed before the measured calls and dumped after them (the
`.1` file's `summary:` line is the instructions of `--calls` calls).

    .venv/bin/python bench/arm_policies.py [--calls 2000] [--rounds 7]
    valgrind --tool=callgrind .venv/bin/python bench/arm_policies.py --callgrind --calls 300
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import requests  # noqa: E402
from azure.core.credentials import AccessToken, AccessTokenInfo  # noqa: E402
from azure.core.pipeline.transport import HttpTransport  # noqa: E402
from azure.core.rest._requests_basic import RestRequestsTransportResponse  # noqa: E402
from requests.structures import CaseInsensitiveDict  # noqa: E402

from rotation.azure.arm import Arm  # noqa: E402
from rotation.azure.pacing import Pacer, PacingPolicy  # noqa: E402

ARM = "https://management.azure.com"
RID = (
    "/subscriptions/00000000-0000-0000-0001-000000000000/resourceGroups/rg/providers/"
    "Microsoft.ContainerRegistry/registries/reg1"
)
KEY = "https://contoso-cmk.vault.azure.net/keys/acr-cmk/" + "a" * 32
BODY = json.dumps(
    {
        "id": RID,
        "name": "reg1",
        "properties": {
            "provisioningState": "Succeeded",
            "encryption": {
                "status": "enabled",
                "keyVaultProperties": {"keyIdentifier": KEY, "identity": "x"},
            },
        },
        "tags": {},
    }
).encode()
HEADERS = {
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": str(len(BODY)),
    "x-ms-ratelimit-remaining-subscription-reads": "11999",
}


class Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        return AccessTokenInfo("token", int(time.time()) + 3600)


class Canned(HttpTransport[Any, Any]):
    """Answers every request with BODY, as requests' transport would after reading it."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        raw = requests.Response()
        raw.status_code, raw.reason, raw.url = 200, "OK", request.url
        raw.headers = CaseInsensitiveDict(HEADERS)
        raw._content, raw.raw = BODY, io.BytesIO(b"")
        raw._content_consumed = True  # type: ignore[attr-defined]  # requests sets it on reading
        response = RestRequestsTransportResponse(request=request, internal_response=raw)
        response.read()
        return response

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> Canned:
        return self

    def __exit__(self, *args: Any) -> None:
        pass

    def sleep(self, duration: float) -> None:
        pass


def callgrind(command: str) -> None:
    subprocess.run(["callgrind_control", command, str(os.getpid())], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="zero and dump callgrind's counters")
    args = parser.parse_args()
    arm = Arm(Token(), ARM, [f"{ARM}/.default"], Canned(), 0.0, PacingPolicy(Pacer()))
    for _ in range(50):  # warm: the token, the pacer's gate, lazy imports
        assert (arm.get(RID, "2023-07-01") or {}).get("name") == "reg1"
    if args.callgrind:
        callgrind("-z")
        for _ in range(args.calls):
            arm.get(RID, "2023-07-01")
        callgrind("-d")
        print(f"{args.calls} calls: instructions in the callgrind dump ending .1")
        return 0
    rounds = []
    for _ in range(args.rounds):
        started = time.thread_time()
        for _ in range(args.calls):
            arm.get(RID, "2023-07-01")
        rounds.append(1e6 * (time.thread_time() - started) / args.calls)
    print(
        f"Arm.get through the policies, canned answer: {min(rounds):.0f} µs CPU per call "
        f"(min of {args.rounds} rounds of {args.calls}; median {sorted(rounds)[len(rounds) // 2]:.0f}); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
