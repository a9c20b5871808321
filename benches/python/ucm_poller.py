#!/usr/bin/env python3
"""What a user would otherwise write: a minimal UCM CDR poller with requests + prometheus_client.

Not shipped; the benches run it on the same work as the exporter to compare (scripts/bench.sh).
It follows the same counting rules in their simplest form: legs (flat, or sub_cdr_N in order,
ForkCDR dropped), a call key and leg keys for de-duplication, direction/trunk/disposition, talk
and wait time, per-extension counts, all into prometheus_client metrics.

  ucm_poller.py ingest PAGE.json SECONDS    -> entries/s ingesting one page repeatedly
  ucm_poller.py catchup URL CA START        -> pages from START until a short page
Both print one JSON line.
"""
import hashlib
import json
import re
import resource
import sys
import time

import requests
import urllib3
from prometheus_client import CollectorRegistry, Counter, Histogram

EXT = re.compile(r"^[0-9]{2,7}$")
RANK = {"failed": 0, "busy": 1, "no_answer": 2, "voicemail": 3, "answered": 4}


class Poller:
    def __init__(self):
        reg = CollectorRegistry()
        self.calls = Counter("ucm_calls", "", ["direction", "trunk", "disposition"], registry=reg)
        self.talk = Histogram("ucm_call_talk_seconds", "", ["direction", "trunk"], registry=reg,
                              buckets=[5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600])
        self.wait = Histogram("ucm_call_wait_seconds", "", ["direction", "trunk", "disposition"],
                              registry=reg, buckets=[1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300])
        self.ext_calls = Counter("ucm_extension_calls", "", ["extension", "role", "disposition"],
                                 registry=reg)
        self.seen_calls = set()
        self.seen_legs = set()

    @staticmethod
    def legs(entry):
        if "main_cdr" in entry or any(k.startswith("sub_cdr_") for k in entry):
            subs = sorted((int(k[8:]), v) for k, v in entry.items()
                          if k.startswith("sub_cdr_") and k[8:].isdigit() and isinstance(v, dict))
            legs = [v for _, v in subs]
        else:
            legs = [entry]
        return [l for l in legs if l.get("lastapp", "").strip().lower() != "forkcdr"]

    @staticmethod
    def outcome(leg):
        d = leg.get("disposition", "").strip().upper()
        vm = leg.get("lastapp", "").lower() == "voicemail" or leg.get("action_type", "") == "VM"
        if d == "ANSWERED":
            return "voicemail" if vm else ("answered" if leg.get("dstchannel") else "no_answer")
        return {"NO ANSWER": "no_answer", "BUSY": "busy"}.get(d, "failed")

    def ingest(self, body):
        entries = json.loads(body)["cdr_root"]
        for entry in entries:
            legs = self.legs(entry)
            if not legs:
                continue
            first = legs[0]
            key = (entry.get("cdr") or first.get("session") or first.get("uniqueid"),
                   first.get("start"), first.get("AcctId"))
            leg_keys = [(l.get("session"), l.get("uniqueid"), l.get("start"), l.get("AcctId"),
                         l.get("channel"), l.get("dstchannel")) for l in legs]
            new_legs = [k for k in leg_keys if k not in self.seen_legs]
            self.seen_legs.update(leg_keys)
            if key in self.seen_calls or not new_legs:
                continue
            self.seen_calls.add(key)
            t0 = time.mktime(time.strptime(first["start"], "%Y-%m-%d %H:%M:%S"))
            best, talk, wait, end, callees = "failed", 0, None, 0, {}
            for l in legs:
                off = time.mktime(time.strptime(l["start"], "%Y-%m-%d %H:%M:%S")) - t0
                dur, bill = int(l.get("duration") or 0), int(l.get("billsec") or 0)
                end = max(end, off + dur)
                o = self.outcome(l)
                best = max(best, o, key=RANK.get)
                if o == "answered":
                    talk += bill
                    if wait is None:
                        wait = off + dur - bill
                callee = l.get("dstchannel_ext", "")
                if EXT.match(callee):
                    callees[callee] = max(callees.get(callee, "failed"), o, key=RANK.get)
            src = next((l["src_trunk_name"] for l in legs if l.get("src_trunk_name")), "")
            dst = next((l["dst_trunk_name"] for l in legs if l.get("dst_trunk_name")), "")
            direction = first.get("userfield", "").lower() or (
                "external" if src and dst else "inbound" if src else "outbound" if dst else "internal")
            trunk = src if direction in ("inbound", "external") else dst if direction == "outbound" else ""
            self.calls.labels(direction, trunk, best).inc()
            if best == "answered":
                self.talk.labels(direction, trunk).observe(talk)
            self.wait.labels(direction, trunk, best).observe(wait if wait is not None else end)
            caller = first.get("channel_ext", "")
            if EXT.match(caller):
                self.ext_calls.labels(caller, "caller", best).inc()
            for ext, o in callees.items():
                self.ext_calls.labels(ext, "callee", o).inc()
        return len(entries)


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def bench_ingest(path, seconds):
    body = open(path, "rb").read()
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        n += Poller().ingest(body)
    secs = time.perf_counter() - began
    print(json.dumps({"entries": n, "secs": secs, "entries_per_s": n / secs}))


def catchup(url, ca, start):
    s = requests.Session()
    # The simulator's certificate is a self-signed leaf, which OpenSSL refuses as its own trust
    # anchor; the handshake costs the same without verification, and this is loopback only.
    s.verify = False
    urllib3.disable_warnings()
    del ca
    api = url.rstrip("/") + "/api"

    def call(req):
        return s.post(api, json={"request": req}, timeout=60, verify=False)

    challenge = call({"action": "challenge", "user": "cdrapi"}).json()["response"]["challenge"]
    token = hashlib.md5((challenge + "cdrapi-secret").encode()).hexdigest()
    cookie = call({"action": "login", "user": "cdrapi", "token": token}).json()["response"]["cookie"]
    p = Poller()
    began, offset, pages = time.perf_counter(), 0, 0
    while True:
        body = call({"action": "cdrapi", "cookie": cookie, "format": "json", "numRecords": "1000",
                     "offset": str(offset), "startTime": start}).content
        n = p.ingest(body)
        offset, pages = offset + n, pages + 1
        if n < 1000:
            break
    secs = time.perf_counter() - began
    print(json.dumps({"entries": offset, "calls": len(p.seen_calls), "pages": pages, "secs": secs,
                      "maxrss_kb": maxrss_kb()}))


if __name__ == "__main__":
    if sys.argv[1] == "ingest":
        bench_ingest(sys.argv[2], float(sys.argv[3]))
    else:
        catchup(sys.argv[2], sys.argv[3], sys.argv[4])
