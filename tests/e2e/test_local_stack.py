"""`python -m devstack serve` (what `make serve` runs) driven from outside, as a person would: real
HTTP to the hosted function app, keys made with KeyClient, Key Vault's events delivered by the
Event Grid stand-in, dead letters in Azurite, `rotation replay` and the admin CLI as commands.
Event Grid's schedule is compressed (all ten attempts in well under a second of schedule) and
the queue's visibility timeout is 0, so nothing here waits through real delays."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.identity import DefaultAzureCredential
from azure.keyvault.keys import KeyClient
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.storage.blob import BlobServiceClient

from devstack.infra import event_subscription
from emulator import read_env_file
from emulator.runtime import AMBIENT_KEYS, ENV_KEYS, AdminClient
from tests import scenarios as s

REPO = Path(__file__).resolve().parents[2]
# one worker runs this file under `make test` (pytest-xdist): the stack below starts once, not per worker
pytestmark = pytest.mark.xdist_group("local-stack")

BUILD, EDGE, NEAR = s.registry_id("build"), s.registry_id("edge"), s.registry_id("near")


def estate() -> dict[str, Any]:
    return {
        **s.scenario(
            {
                "acr-cmk": s.key(s.version("old", created="-200d"), s.version("cur", created="-10d")),
                "drill-cmk": s.key(s.version("d1", created="-10d")),
                "near-cmk": s.key(s.version("n1", created="-300d", exp="+40d")),
            },
            registries=[
                s.registry("build", s.key_id("acr-cmk", s.vid("old"))),
                s.registry("edge", s.key_id("drill-cmk", s.vid("d1"))),
                s.registry("near", s.key_id("near-cmk", s.vid("n1"))),
            ],
        ),
        "subscriptions": [s.SUB_A],
    }


def until[T](probe: Callable[[], T | None], what: str, timeout: float = 60) -> T:
    """Poll `probe` until it returns something truthy (no timing is asserted, only the outcome)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.1)  # real processes (make serve: Azurite, emulator, host) move on their own
    raise AssertionError(f"timed out waiting for {what}")


def children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


class Served:
    def __init__(self, workdir: Path, *options: str) -> None:
        """`options`: more `serve` options (e.g. --instances 2)."""
        scenario_file = workdir / "scenario.json"
        scenario_file.write_text(json.dumps(estate()))
        settings_file = workdir / "local.settings.json"
        sample = json.loads((REPO / "local.settings.sample.json").read_text())
        sample["Values"] |= {
            "ROTATION_SUBSCRIPTIONS": s.SUB_A,
            "ROTATION_POLL_INTERVAL_SECONDS": "0.05",
            "ROTATION_RETRY_INITIAL_SECONDS": "0.05",
            "ROTATION_RETRY_MAX_SECONDS": "0.4",
        }
        settings_file.write_text(json.dumps(sample))
        self.env_file, self.log = workdir / "env", (workdir / "serve.log").open("wb")
        self.audit_log = workdir / "audit.jsonl"
        clean = {k: v for k, v in os.environ.items() if k not in (*ENV_KEYS, *AMBIENT_KEYS)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "devstack", "serve", "--port", "0", "--scenario", str(scenario_file),
             "--env-file", str(self.env_file), "--settings", str(settings_file), "--state-dir", str(workdir / "state"),
             "--eventgrid-time-scale", "0.00001", "--visibility-timeout", "0", "--lro-seconds", "0.05",
             "--audit-log", str(workdir / "audit.jsonl"), *options],
            cwd=REPO, env=clean, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            until(lambda: self.env_file.exists() or self.process.poll() is not None, "the env file")
        except BaseException:
            self.process.send_signal(signal.SIGINT)  # serve stops Azurite, the emulator and the host
            self.process.wait(timeout=60)
            raise
        assert self.process.poll() is None, (workdir / "serve.log").read_text()
        self.env = read_env_file(self.env_file)
        self.admin = AdminClient(self.env["EMULATOR_ADMIN_URL"])

    def http(self, method: str, path: str, body: Any = None, key: str | None = "header") -> tuple[int, Any]:
        url = self.env["LOCAL_FUNCTIONS_URL"] + path
        headers = {"Content-Type": "application/json"}
        if key == "header":
            headers["x-functions-key"] = self.env["LOCAL_FUNCTION_KEY"]
        elif key == "query":
            url += ("&" if "?" in url else "?") + "code=" + self.env["LOCAL_FUNCTION_KEY"]
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - http to loopback
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=60) as answer:
                raw, status = answer.read(), answer.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        return status, (json.loads(raw) if raw else None)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in (*ENV_KEYS, *AMBIENT_KEYS)} | self.env
        # `rotation` is the installed console script (`python -m rotation` has no __main__ yet)
        command = (
            [str(Path(sys.executable).parent / "rotation")]
            if args[0] == "rotation"
            else [sys.executable, "-m", args[0]]
        )
        return subprocess.run(
            [*command, *args[1:]], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
        )

    def deliveries(self, outcome: str, event_type: str | None = None) -> list[dict[str, Any]]:
        return [
            d
            for d in self.admin._call("GET", "/eventgrid/deliveries")["deliveries"]
            if d["outcome"] == outcome and (event_type is None or d["eventType"] == event_type)
        ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    stack = Served(tmp_path_factory.mktemp("local-stack"))
    yield stack
    if stack.process.poll() is None:
        stack.process.kill()
        stack.process.wait()


@pytest.fixture
def azure(served: Served, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[KeyClient, Any]]:
    for name in AMBIENT_KEYS:
        monkeypatch.delenv(name, raising=False)
    for name, value in served.env.items():
        monkeypatch.setenv(name, value)
    credential = DefaultAzureCredential()
    keys = KeyClient(f"https://{s.VAULT_HOST}", credential)
    registries = ContainerRegistryManagementClient(credential, s.SUB_A).registries
    yield keys, registries
    served.admin.clear_faults()


def registry_key(registries: Any, resource_id: str) -> str:
    name = resource_id.rsplit("/", 1)[1]
    return str(registries.get("rg-acr", name).encryption.key_vault_properties.key_identifier)


def test_http_routes_answer_with_the_function_key_and_401_without(served: Served) -> None:
    body = {"keyId": s.key_id("acr-cmk")}
    assert served.http("POST", "/api/rotations/plan", body, key=None)[0] == 401
    status, plan = served.http("POST", "/api/rotations/plan", body)
    assert status == 200
    assert plan["desiredVersion"] == s.vid("cur")
    assert {(step["target"], step["action"]) for step in plan["steps"]} >= {(BUILD, "update")}
    assert served.http("POST", "/api/rotations/plan", body, key="query")[0] == 200
    assert served.http("GET", "/api/rotations/00000000-0000-4000-8000-000000000000")[0] == 404
    assert served.http("GET", "/api/no-such-route")[0] == 404


def test_a_new_key_version_moves_every_pinned_consumer_through_the_event(
    served: Served, azure: tuple[KeyClient, Any]
) -> None:
    keys, registries = azure
    new = str(keys.rotate_key("acr-cmk").properties.version)
    until(lambda: registry_key(registries, BUILD).endswith(new), "the registry on the new version")
    delivered = served.deliveries("delivered", "Microsoft.KeyVault.KeyNewVersionCreated")
    event = next(d for d in delivered if d["subject"] == "acr-cmk")
    status, page = served.http("GET", f"/api/audit?key={s.key_id('acr-cmk')}")
    assert status == 200
    kinds = {(r["kind"], r.get("eventId")) for r in page["records"]}
    assert ("event-received", event["eventId"]) in kinds


def test_a_failing_app_ends_in_a_dead_letter_that_replay_takes_through(
    served: Served, azure: tuple[KeyClient, Any]
) -> None:
    keys, registries = azure
    spec = event_subscription()
    assert (
        served.cli("emulator", "fault", "add", "--host", "eventgrid-delivery", "--status", "500").returncode
        == 0
    )
    new = str(keys.rotate_key("drill-cmk").properties.version)
    letter = until(
        lambda: [d for d in served.deliveries("dead-lettered") if d["subject"] == "drill-cmk"],
        "a dead letter",
    )[0]
    attempts = [d for d in served.deliveries("failed") if d["eventId"] == letter["eventId"]]
    assert len(attempts) == spec.max_delivery_attempts  # infra's maxDeliveryAttempts, then dead-lettered
    assert letter["blob"].startswith(f"{spec.name.upper()}/")
    blob = BlobServiceClient.from_connection_string(served.env["AzureWebJobsStorage"]).get_blob_client(
        spec.dead_letter_container, letter["blob"]
    )
    (dead,) = json.loads(blob.download_blob().readall())
    assert dead["eventType"] == "Microsoft.KeyVault.KeyNewVersionCreated"
    assert dead["data"]["Version"] == new
    assert dead["deadLetterReason"] == "MaxDeliveryAttemptsExceeded"
    assert dead["deliveryAttempts"] == spec.max_delivery_attempts
    assert (dead["lastHttpStatusCode"], dead["lastDeliveryOutcome"]) == (500, "Aborted")
    assert dead["publishTime"] <= dead["lastDeliveryAttemptTime"]
    assert registry_key(registries, EDGE).endswith(s.vid("d1"))  # nothing moved while the app failed
    said = until(
        lambda: [
            line for line in Path(served.log.name).read_text().splitlines() if letter["eventId"] in line
        ],
        "the dead letter's line in the host log",
    )
    assert any("dead-lettered" in line and letter["blob"] in line for line in said)

    assert served.cli("emulator", "fault", "clear").returncode == 0
    replayed = served.cli("rotation", "replay", "--key", s.key_id("drill-cmk"), "--yes")
    assert replayed.returncode in (0, 3), replayed.stdout + replayed.stderr
    assert "replayed" in replayed.stdout
    assert registry_key(registries, EDGE).endswith(new)


def test_a_request_that_keeps_failing_goes_to_the_poison_queue_after_max_dequeue_count(
    served: Served, azure: tuple[KeyClient, Any]
) -> None:
    from azure.storage.queue import QueueClient

    from devstack.functions_host import QueueHostSettings

    keys, _ = azure
    failed = "Executed 'Functions.run_rotation' (Failed"
    before = Path(served.log.name).read_text().count(failed)
    served.admin.add_fault(
        method="PATCH", host="management.azure.com", pathRegex="registries/build$", status=403
    )
    keys.rotate_key("acr-cmk")  # the event's run fails on the registry, every attempt
    poison = QueueClient.from_connection_string(served.env["AzureWebJobsStorage"], "rotation-requests-poison")
    (message,) = until(lambda: list(poison.peek_messages(max_messages=32)), "the poison queue")
    assert json.loads(_b64(message.content))["keyId"] == s.key_id("acr-cmk")
    host = QueueHostSettings.from_host_json(REPO / "host.json")
    log = Path(served.log.name).read_text()
    assert log.count(failed) - before == host.max_dequeue_count
    assert "Moving message to queue 'rotation-requests-poison'" in log
    poison.clear_messages()


def test_audit_lines_go_to_their_file_not_the_host_log(served: Served, azure: tuple[KeyClient, Any]) -> None:
    # drill-cmk: its test is over; a run still holding near-cmk's lease would delay the next test
    status, queued = served.http("POST", "/api/rotations", {"keyId": s.key_id("drill-cmk"), "dryRun": True})
    assert status == 202
    until(
        lambda: served.http("GET", f"/api/rotations/{queued['runId']}")[1].get("finishedAt"),
        "the dry run's end",
    )
    lines = until(
        lambda: served.audit_log.read_text().splitlines() if served.audit_log.exists() else None,
        "audit lines",
    )
    assert all(json.loads(line)["audit"]["kind"] for line in lines)
    assert '{"audit"' not in Path(served.log.name).read_text()


def _b64(content: str) -> str:
    import base64

    return base64.b64decode(content).decode()


def test_clock_advance_fires_near_expiry_and_the_app_renews_the_key(
    served: Served, azure: tuple[KeyClient, Any]
) -> None:
    _keys, registries = azure
    advanced = served.cli("emulator", "clock", "advance", "11d")
    assert advanced.returncode == 0, advanced.stderr
    assert [f["eventType"] for f in json.loads(advanced.stdout)["fired"] if f["subject"] == "near-cmk"] == [
        "Microsoft.KeyVault.KeyNearExpiry"
    ]
    until(
        lambda: not registry_key(registries, NEAR).endswith(s.vid("n1")), "the registry on a renewed version"
    )

    def announced() -> list[dict[str, Any]]:
        delivered = served.deliveries("delivered", "Microsoft.KeyVault.KeyNewVersionCreated")
        return [d for d in delivered if d["subject"] == "near-cmk"]

    renewed = until(announced, "Key Vault's announcement of the renewed version")
    assert len(renewed) == 1  # the app made one version, and Key Vault announced it
    assert registry_key(registries, NEAR).endswith(renewed[0]["version"])


def test_timer_runs_on_demand_and_ctrl_c_leaves_nothing_running(served: Served) -> None:
    ran = served.cli("emulator", "timer", "sweep")
    assert ran.returncode == 0, ran.stderr
    assert "sweep_drift started" in ran.stdout
    assert served.cli("emulator", "timer", "nope").returncode == 2
    log = Path(served.log.name)
    until(lambda: "Executed 'Functions.sweep_drift' (Succeeded" in log.read_text(), "the sweep to finish")

    helpers = children(served.process.pid)
    assert helpers  # Azurite runs as a child
    served.process.send_signal(signal.SIGINT)
    # Ctrl-C drains: runs the sweep queued finish first, as the Functions host lets them
    assert served.process.wait(timeout=120) == 0
    assert "local stack stopped" in log.read_text()
    assert not served.env_file.exists()  # its keys died with the stack
    until(
        lambda: not any(Path(f"/proc/{pid}").exists() for pid in helpers), "every child to exit", timeout=15
    )
