"""CPU of ARM calls outside the transport: `Arm.get` and a long-running `Arm.write` through the
product's own pipeline (host guard, request id and user agent, ARM's bearer authentication,
pacing, tracing, logging), answer decoding, error mapping and LRO polling, over a canned
transport that answers at once from memory (no socket, no TLS, no emulator), so what it prints
is the pipeline's and the client's share, not the network's.

`--call get`: a GET answered 200 with a resource. `--call write`: a PATCH answered 202 with
`Azure-AsyncOperation` and `Retry-After: 0`, one status poll answered Succeeded, then the final
GET (three calls; the figure is per write). `--call poll`: the same write polling the resource
itself (`shows_write`, one read per write).

Prints the thread's CPU per call (the minimum of `--rounds`; the machine's load only inflates
it). `--callgrind`: run under `valgrind --tool=callgrind` for instruction counts, which the load
does not move; the counters are zeroed before the measured calls and dumped after them (the
`.1` file's `summary:` line is the instructions of `--calls` calls).

    .venv/bin/python bench/arm_policies.py [--call get|write|poll] [--calls 2000] [--rounds 7]
    valgrind --tool=callgrind .venv/bin/python bench/arm_policies.py --callgrind --calls 300
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.core.credentials import AccessToken, AccessTokenInfo  # noqa: E402
from azure.core.pipeline.transport import HttpTransport  # noqa: E402
from azure.core.rest._http_response_impl import HttpResponseImpl  # noqa: E402
from azure.core.utils import CaseInsensitiveDict  # noqa: E402

from rotation.azure.arm import Arm  # noqa: E402
from rotation.azure.pacing import Pacer, PacingPolicy  # noqa: E402

ARM = "https://management.azure.com"
RID = (
    "/subscriptions/00000000-0000-0000-0001-000000000000/resourceGroups/rg/providers/"
    "Microsoft.ContainerRegistry/registries/reg1"
)
STATUS = f"{ARM}/subscriptions/00000000-0000-0000-0001-000000000000/providers/Microsoft.ContainerRegistry/operations/op1"
KEY = "https://contoso-cmk.vault.azure.net/keys/acr-cmk/" + "a" * 32
API = "2023-07-01"
RESOURCE = json.dumps(
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
RUNNING = json.dumps({"id": RID, "name": "reg1", "properties": {"provisioningState": "Updating"}}).encode()
SUCCEEDED = json.dumps({"status": "Succeeded"}).encode()


class Token:
    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken("token", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> AccessTokenInfo:
        return AccessTokenInfo("token", int(time.time()) + 3600)


def _answer(request: Any, status: int, body: bytes, **extra: str) -> HttpResponseImpl:
    """An answer read whole, as a transport hands it over (azure-core's own response class)."""
    headers = CaseInsensitiveDict(
        {
            "Content-Type": "application/json; charset=utf-8",
            "Content-Length": str(len(body)),
            "x-ms-ratelimit-remaining-subscription-reads": "11999",
            "x-ms-request-id": "00000000-0000-0000-0000-000000000001",
            **extra,
        }
    )
    response = HttpResponseImpl(
        request=request,
        internal_response=None,
        status_code=status,
        reason="OK",
        content_type=headers["Content-Type"],
        headers=headers,
        stream_download_generator=None,
    )
    response._content = body
    response._is_closed = response._is_stream_consumed = True
    return response


class Canned(HttpTransport[Any, Any]):
    """A resource (200), a write (202 with a status link), the operation's status (Succeeded)."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        if request.method in ("PATCH", "PUT"):
            return _answer(request, 202, b"", **{"Azure-AsyncOperation": STATUS, "Retry-After": "0"})
        if request.url.startswith(STATUS):
            return _answer(request, 200, SUCCEEDED)
        return _answer(request, 200, RESOURCE)

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


def calls(arm: Arm) -> dict[str, Callable[[], Any]]:
    patch = {"properties": {"encryption": {"keyVaultProperties": {"keyIdentifier": KEY}}}}
    return {
        "get": lambda: arm.get(RID, API),
        "write": lambda: arm.write("PATCH", RID, API, patch),
        "poll": lambda: arm.write("PATCH", RID, API, patch, shows_write=lambda r: bool(r)),
    }


def callgrind(command: str) -> None:
    subprocess.run(["callgrind_control", command, str(os.getpid())], check=True, capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--call", choices=("get", "write", "poll"), default="get")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--callgrind", action="store_true", help="zero and dump callgrind's counters")
    args = parser.parse_args()
    arm = Arm(Token(), ARM, [f"{ARM}/.default"], Canned(), 0.0, PacingPolicy(Pacer()))
    call = calls(arm)[args.call]
    for _ in range(50):  # warm: the token, the pacer's gate, lazy imports
        assert (call() or {}).get("name") == "reg1"
    if args.callgrind:
        callgrind("-z")
        for _ in range(args.calls):
            call()
        callgrind("-d")
        print(f"{args.calls} calls: instructions in the callgrind dump ending .1")
        return 0
    rounds = []
    for _ in range(args.rounds):
        started = time.thread_time()
        for _ in range(args.calls):
            call()
        rounds.append(1e6 * (time.thread_time() - started) / args.calls)
    print(
        f"Arm {args.call} through the pipeline, canned answers: {min(rounds):.0f} µs CPU per call "
        f"(min of {args.rounds} rounds of {args.calls}; median {sorted(rounds)[len(rounds) // 2]:.0f}); "
        f"load {os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
