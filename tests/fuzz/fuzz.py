#!/usr/bin/env python3
"""Spec-driven fuzzing of a running Trellis with Schemathesis.

Every client-server OpenAPI file of the Matrix specification is run through `st run`
(examples, coverage and fuzzing phases) against the server at --origin, authenticated as a
user of its own (a fresh one per file, so a file that logs out or deletes devices cannot
spoil the next). Path parameters that name rooms, users, events and aliases are drawn half
the time from real ones, so generated requests reach past the 404s into the handlers.

The run fails on any 5xx answer, on a request that never got an answer, and on any
response-schema violation that `errata.toml` (next to this file) does not describe as an
erratum of the specification. It reports the requests sent, the 5xx seen, the failures and
the errata met, in the terminal and in <out>/summary.json.

Usage: fuzz.py --origin http://127.0.0.1:8008 --spec DIR --out DIR [--examples N] [--seed S]
"""

import argparse
import base64
import json
import os
import secrets
import subprocess
import sys
import tomllib
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
import urllib.request
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent



def call(origin, method, path, body=None, token=None):
    """One JSON request; (status, body)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(origin + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def register(origin):
    """A new user; (user_id, access_token)."""
    name = "fuzz" + secrets.token_hex(6)
    body = {"username": name, "password": "fuzz-password", "auth": {"type": "m.login.dummy"}}
    status, reply = call(origin, "POST", "/_matrix/client/v3/register", body)
    if status != 200:
        sys.exit(f"fuzz: cannot register a user: {status} {reply}")
    return reply["user_id"], reply["access_token"]


def world(origin):
    """Real identifiers for path parameters: a room with an alias, an event, two users."""
    alice, token = register(origin)
    bob, _ = register(origin)
    alias = "fuzz" + secrets.token_hex(4)
    status, room = call(
        origin,
        "POST",
        "/_matrix/client/v3/createRoom",
        {"preset": "public_chat", "room_alias_name": alias, "invite": [bob], "name": "fuzz"},
        token,
    )
    if status != 200:
        sys.exit(f"fuzz: cannot create a room: {status} {room}")
    room_id = room["room_id"]
    path = f"/_matrix/client/v3/rooms/{urllib.parse.quote(room_id)}/send/m.room.message/fuzz1"
    status, sent = call(origin, "PUT", path, {"msgtype": "m.text", "body": "fuzz"}, token)
    if status != 200:
        sys.exit(f"fuzz: cannot send an event: {status} {sent}")
    server = alice.split(":", 1)[1]
    return {
        "rooms": [room_id],
        "users": [alice, bob],
        "events": [sent["event_id"]],
        "aliases": [f"#{alias}:{server}"],
        "rooms_or_aliases": [room_id, f"#{alias}:{server}"],
        "servers": [server],
    }, token


def config_file(out, ids):
    """The Schemathesis configuration: bearer auth from the environment, real identifiers
    for half of the path parameters that name one."""
    lines = ['[auth.openapi.accessTokenBearer]', 'bearer = "${TRELLIS_FUZZ_TOKEN}"', ""]
    for name, values in ids.items():
        lines.append(f"[dictionaries.{name}]")
        lines.append("values = " + json.dumps(values))
        lines.append("")
    bindings = {
        "roomId": "rooms",
        "userId": "users",
        "eventId": "events",
        "roomAlias": "aliases",
        "roomIdOrAlias": "rooms_or_aliases",
        "serverName": "servers",
    }
    lines.append("[parameters]")
    for param, dictionary in bindings.items():
        lines.append(f'"path.{param}" = {{ dictionary = "{dictionary}", probability = 0.5 }}')
    path = out / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def base_path(spec_file):
    """The `basePath` default of the file's `servers` entry (a small YAML read without a
    YAML library: the spec files all spell it the same way)."""
    lines = spec_file.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "basePath:":
            for follow in lines[i + 1 : i + 4]:
                if follow.strip().startswith("default:"):
                    return follow.split(":", 1)[1].strip().strip("\"'")
    return "/_matrix/client/v3"


def load_errata():
    with open(HERE / "errata.toml", "rb") as f:
        return tomllib.load(f).get("erratum", [])


def erratum_for(errata, operation, status, errcode, message):
    for e in errata:
        ops = e.get("operations", ["*"])
        if "*" not in ops and operation not in ops:
            continue
        if "status" in e and status not in e["status"]:
            continue
        if "errcodes" in e and errcode not in e["errcodes"]:
            continue
        if "message" in e and e["message"] not in message:
            continue
        return e
    return None


def decode(content):
    if not content:
        return None
    raw = base64.b64decode(content["$base64"]) if "$base64" in content else content.get("string", "").encode()
    try:
        return json.loads(raw)
    except ValueError:
        return None


def run_file(spec_file, origin, config, out, examples, seed, token):
    name = spec_file.stem
    ndjson = out / f"{name}.ndjson"
    cmd = [
        "st", "--config-file", str(config), "run", str(spec_file),
        "--url", origin + base_path(spec_file),
        "--checks", "not_a_server_error,response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", str(examples),
        "--seed", str(seed),
        "--workers", "2",
        "--request-timeout", "60",
        "--continue-on-failure",
        "--no-color",
        "--report", "ndjson", "--report-ndjson-path", str(ndjson),
    ]  # fmt: skip
    env = dict(os.environ, TRELLIS_FUZZ_TOKEN=token)
    with open(out / f"{name}.txt", "w") as log:
        subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return ndjson


def tally(ndjson, errata, totals):
    """Counts one file's requests and answers; records its failures and errata met."""
    if not ndjson.exists() or ndjson.stat().st_size == 0:
        totals["failures"].append(f"{ndjson.stem}: Schemathesis produced no report (see {ndjson.stem}.txt)")
        return
    for line in ndjson.open():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        label = recorder["label"]
        interactions = recorder.get("interactions") or {}
        for case_id, interaction in interactions.items():
            totals["requests"] += 1
            response = interaction.get("response")
            if response is None:
                totals["unanswered"] += 1
                totals["failures"].append(f"{label}: no answer ({case_id})")
                continue
            totals["statuses"][response["status_code"]] += 1
            if response["status_code"] >= 500:
                totals["server_errors"] += 1
        for case_id, checks in (recorder.get("checks") or {}).items():
            for check in checks:
                if check["status"] == "success":
                    continue
                failure = (check.get("failure_info") or {}).get("failure") or {}
                message = failure.get("message", "")
                response = (interactions.get(case_id) or {}).get("response") or {}
                status = response.get("status_code")
                body = decode(response.get("content"))
                errcode = body.get("errcode") if isinstance(body, dict) else None
                known = None
                if check["name"] == "response_schema_conformance":
                    known = erratum_for(errata, label, status, errcode, message)
                if known:
                    totals["errata"][known["id"]] += 1
                else:
                    first = message.splitlines()[0] if message else failure.get("title", "")
                    totals["failures"].append(f"{label}: {check['name']} [{status} {errcode or ''}] {first}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--origin", required=True)
    parser.add_argument("--spec", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--examples", type=int, default=20)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--parallel", type=int, default=4, help="spec files fuzzed at once")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    errata = load_errata()
    ids, _ = world(args.origin)
    config = config_file(args.out, ids)
    files = sorted(args.spec.glob("*.yaml"))
    totals = {
        "requests": 0,
        "server_errors": 0,
        "unanswered": 0,
        "statuses": Counter(),
        "errata": Counter(),
        "failures": [],
    }
    # Each file as a user of its own: one that logs out or deletes devices spoils no other.
    tokens = [register(args.origin)[1] for _ in files]

    def fuzz(job):
        spec_file, token = job
        return spec_file, run_file(spec_file, args.origin, config, args.out, args.examples, args.seed, token)

    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        for spec_file, ndjson in pool.map(fuzz, zip(files, tokens)):
            before = (totals["requests"], len(totals["failures"]))
            tally(ndjson, errata, totals)
            sent, failed = totals["requests"] - before[0], len(totals["failures"]) - before[1]
            print(f"fuzz: {spec_file.name}: {sent} requests, {failed} failures", flush=True)

    summary = {
        "files": len(files),
        "requests": totals["requests"],
        "server_errors": totals["server_errors"],
        "unanswered": totals["unanswered"],
        "statuses": {str(k): v for k, v in sorted(totals["statuses"].items())},
        "errata_met": dict(totals["errata"]),
        "failures": sorted(set(totals["failures"])),
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"fuzz: {summary['files']} spec files, {summary['requests']} requests, "
        f"{summary['server_errors']} 5xx, {summary['unanswered']} unanswered, "
        f"answers by class {summary['statuses']}, errata met {summary['errata_met']}"
    )
    for failure in summary["failures"]:
        print(f"fuzz: FAIL {failure}")
    if summary["failures"] or summary["server_errors"] or summary["unanswered"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
