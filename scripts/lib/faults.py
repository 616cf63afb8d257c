"""Load faults against a running Latchkey (scripts/bench-faults; issue 14 item 4).

Well-behaved clients call GET /v1/me at a fixed rate from 127.0.0.2 through every phase while
attackers come and go; each phase prints the well-behaved clients' latency (measured from the
moment each request was due, so a stall counts in full: no coordinated omission), their
failures, and the server's resident memory and open descriptors. Phases:

  quiet  the well-behaved clients alone
  idle   + IDLE connections that never send a byte (from 127.0.0.10 upwards, 250 an address)
  slow   + SLOW clients sending a request head a byte a second, and SLOW sending a body a byte
         a second (POST /oauth2/token with a 60,000-byte Content-Length)
  burst  + a flood from 127.0.0.1 (wrk, FLOOD_CONNS connections): refused bearer tokens at
         /v1/me, then wrong client secrets at /oauth2/token, each far past its per-address limit
  all    every attack at once
  after  the well-behaved clients alone again: back to the quiet figures, memory given back

Usage: faults.py URL SERVER_PID TOKEN_FILE WRK_LUA RESULTS_FILE   (settings in the environment:
PHASE_SECS RATE GOOD_CONNS IDLE SLOW FLOOD_CONNS). Exit status 2 when a well-behaved request
failed (an error or any answer but 200) in any phase.
"""

import asyncio
import multiprocessing
import os
import random
import statistics
import sys
import time
import urllib.parse

URL, PID, TOKEN_FILE, WRK_LUA, RESULTS = sys.argv[1:6]
PHASE_SECS = float(os.environ.get("PHASE_SECS", "20"))
RATE = float(os.environ.get("RATE", "400"))
GOOD_CONNS = int(os.environ.get("GOOD_CONNS", "16"))
IDLE = int(os.environ.get("IDLE", "10000"))
SLOW = int(os.environ.get("SLOW", "1000"))
FLOOD_CONNS = int(os.environ.get("FLOOD_CONNS", "64"))
REQUEST_TIMEOUT = 5.0
RECONNECT_EVERY = 50  # requests per well-behaved connection: new clients must get in too

u = urllib.parse.urlsplit(URL)
HOST, PORT = u.hostname, u.port
tokens = [t.strip() for t in open(TOKEN_FILE) if t.strip()][:2000]

phase = "start"
samples = {}  # phase -> list of latencies (ms) of successful requests
failures = {}  # phase -> {reason: count}
resources = {}  # phase -> (max rss KiB, max fds, last rss KiB, last fds)
attack_notes = {}  # phase -> [text]


NOTES = multiprocessing.Queue()


def note(ph, text):
    """From the attackers' process: kept for the report."""
    NOTES.put((ph, text))
    print(f"#   {text}", file=sys.stderr)


async def connect(source, timeout=5.0):
    return await asyncio.wait_for(
        asyncio.open_connection(HOST, PORT, local_addr=(source, 0)), timeout)


async def read_response(reader):
    """Status of one HTTP/1.1 answer (its body read by Content-Length) and whether it closes."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    length, close = 0, False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "connection" and value.strip().lower() == "close":
            close = True
    if length:
        await reader.readexactly(length)
    return status, close


async def good_worker(i, t0, stop_at):
    n, conn, used = 0, None, 0
    while True:
        due = t0 + (n * GOOD_CONNS + i) / RATE
        if due >= stop_at:
            break
        n += 1
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ph = phase
        token = random.choice(tokens)
        request = (f"GET /v1/me HTTP/1.1\r\nHost: {HOST}:{PORT}\r\n"
                   f"Authorization: Bearer {token}\r\n\r\n").encode()
        try:
            if conn is None or used >= RECONNECT_EVERY:
                if conn is not None:
                    conn[1].close()
                conn, used = await connect("127.0.0.2"), 0
            reader, writer = conn
            writer.write(request)
            status, close = await asyncio.wait_for(read_response(reader), REQUEST_TIMEOUT)
            used += 1
            if close:
                writer.close()
                conn = None
            if status == 200:
                samples.setdefault(ph, []).append((time.monotonic() - due) * 1000)
            else:
                failures.setdefault(ph, {}).setdefault(f"status {status}", 0)
                failures[ph][f"status {status}"] += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            reason = type(e).__name__
            failures.setdefault(ph, {}).setdefault(reason, 0)
            failures[ph][reason] += 1
            if conn is not None:
                conn[1].close()
            conn = None
    if conn is not None:
        conn[1].close()


def read_proc():
    rss = 0
    with open(f"/proc/{PID}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
    fds = len(os.listdir(f"/proc/{PID}/fd"))
    return rss, fds


async def sampler(stop):
    while not stop.is_set():
        try:
            rss, fds = read_proc()
        except OSError:
            print("the server is gone", file=sys.stderr)
            sys.exit(1)
        prev = resources.get(phase, (0, 0, 0, 0))
        resources[phase] = (max(prev[0], rss), max(prev[1], fds), rss, fds)
        await asyncio.sleep(0.25)


def source_of(k):
    """127.0.0.10 upwards, 250 connections an address."""
    return f"127.0.{(10 + k // 250) // 256}.{(10 + k // 250) % 256}"


async def open_many(count, opener, limit=256):
    """Opens `count` connections, `limit` at a time; returns the ones that opened."""
    gate = asyncio.Semaphore(limit)
    failed = 0

    async def one(k):
        nonlocal failed
        async with gate:
            try:
                return await opener(k)
            except (OSError, asyncio.TimeoutError):
                failed += 1
                return None

    opened = await asyncio.gather(*(one(k) for k in range(count)))
    return [c for c in opened if c is not None], failed


async def watch_close(reader, started):
    """Seconds until the server closed the connection (None while it is open)."""
    try:
        while await reader.read(4096):
            pass
    except OSError:
        pass
    return time.monotonic() - started


async def idle_attack(ph, until):
    t = time.monotonic()
    opened, failed = await open_many(IDLE, lambda k: connect(source_of(k)))
    watchers = [asyncio.ensure_future(watch_close(r, t)) for r, _ in opened]
    note(ph, f"idle: {len(opened)} of {IDLE} connections opened in {time.monotonic() - t:.1f} s"
             f" ({failed} could not connect)")
    await asyncio.sleep(max(0.0, until - time.monotonic()))
    closed = [w.result() for w in watchers if w.done()]
    note(ph, f"idle: {len(opened) - len(closed)} still open at the phase's end, {len(closed)} "
             f"closed by the server" + (f" (median after {statistics.median(closed):.1f} s)" if closed else ""))
    for w in watchers:
        w.cancel()
    for _, w in opened:
        w.close()


async def slow_client(k, kind, until):
    reader, writer = await connect(source_of(IDLE + k))
    started = time.monotonic()
    if kind == "head":
        writer.write(f"GET /v1/me HTTP/1.1\r\nHost: {HOST}\r\nX-Slow: ".encode())
    else:
        writer.write((f"POST /oauth2/token HTTP/1.1\r\nHost: {HOST}\r\n"
                      "Content-Type: application/x-www-form-urlencoded\r\n"
                      "Content-Length: 60000\r\n\r\ngrant_type=").encode())
    answer = asyncio.ensure_future(reader.read(1))
    try:
        while time.monotonic() < until:
            done, _ = await asyncio.wait({answer}, timeout=1.0)
            if done:
                break
            writer.write(b"a")
        cut = time.monotonic() - started if answer.done() else None
    except OSError:
        cut = time.monotonic() - started
    answer.cancel()
    writer.close()
    return cut


async def slow_attack(ph, until):
    results = {}
    for kind, offset in (("head", 0), ("body", SLOW)):
        results[kind] = asyncio.gather(*(
            slow_client(offset + k, kind, until) for k in range(SLOW)), return_exceptions=True)
    for kind, fut in results.items():
        cuts = await fut
        errors = sum(1 for c in cuts if isinstance(c, BaseException))
        times = [c for c in cuts if isinstance(c, float)]
        held = len(cuts) - errors - len(times)
        what = "a request head" if kind == "head" else "a body"
        note(ph, f"slow ({what} a byte a second): {len(times)} of {SLOW} cut"
                 + (f" after {statistics.median(times):.1f} s (median), {max(times):.1f} s (max)" if times else "")
                 + f", {held} still open at the phase's end" + (f", {errors} could not connect" if errors else ""))


async def flood(ph, until):
    """wrk from 127.0.0.1 (its only address), half the time each target."""
    half = max(1.0, (until - time.monotonic()) / 2)
    form = os.path.join(os.path.dirname(RESULTS) or ".", ".faults-form.txt")
    with open(form, "w") as f:
        f.write("grant_type=client_credentials&client_id=lkc_nonexistent&client_secret=wrong")
    for label, path, env in (("refused bearer tokens at /v1/me", "/v1/me", {"LK_MODE": "verify_miss"}),
                             ("wrong client secrets at /oauth2/token", "/oauth2/token",
                              {"LK_MODE": "form", "LK_FORM_FILE": form})):
        proc = await asyncio.create_subprocess_exec(
            "wrk", "-t1", f"-c{FLOOD_CONNS}", f"-d{int(half)}s", "-s", WRK_LUA, URL + path,
            env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await proc.communicate()
        line = next((l for l in out.decode().splitlines() if l.startswith("RESULT")), "")
        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        note(ph, f"flood ({label}): {float(fields.get('rps', 0)):,.0f} req/s, "
                 f"{fields.get('non2xx', '?')} refused of {fields.get('requests', '?')}")
    os.unlink(form)


ATTACKS = {"idle": [idle_attack], "slow": [slow_attack], "burst": [flood],
           "all": [idle_attack, slow_attack, flood]}


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


PHASES = ["quiet", "idle", "slow", "burst", "all", "after"]


async def attackers(t0):
    for k, ph in enumerate(PHASES):
        await asyncio.sleep(max(0.0, t0 + PHASE_SECS * k - time.monotonic()))
        until = t0 + PHASE_SECS * (k + 1)
        print(f"# phase {ph} ({PHASE_SECS:.0f} s)", file=sys.stderr)
        await asyncio.gather(*(a(ph, until) for a in ATTACKS.get(ph, [])))


def attackers_process(t0):
    """The attacks run in a process of their own, so that opening ten thousand connections
    never delays a well-behaved request in the measuring process's event loop."""
    asyncio.run(attackers(t0))


async def main():
    global phase
    t0 = time.monotonic() + 1.0
    child = multiprocessing.Process(target=attackers_process, args=(t0,))
    child.start()
    stop_at = t0 + PHASE_SECS * len(PHASES)
    stop = asyncio.Event()
    mon = asyncio.ensure_future(sampler(stop))
    workers = [asyncio.ensure_future(good_worker(i, t0, stop_at)) for i in range(GOOD_CONNS)]
    for k, ph in enumerate(PHASES):
        await asyncio.sleep(max(0.0, t0 + PHASE_SECS * k - time.monotonic()))
        phase = ph
    await asyncio.gather(*workers)
    stop.set()
    await mon
    await asyncio.get_running_loop().run_in_executor(None, child.join)
    while not NOTES.empty():
        ph, text = NOTES.get()
        attack_notes.setdefault(ph, []).append(text)
    if child.exitcode != 0:
        print(f"the attackers' process failed (exit status {child.exitcode})", file=sys.stderr)
        sys.exit(1)

    bad = False
    rows = ["| phase | well-behaved requests | failed | p50 ms | p99 ms | p99.9 ms | max ms | server RSS MiB (max, at the end) | open fds (max, at the end) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    with open(RESULTS, "a") as out:
        for ph in PHASES:
            lat = samples.get(ph, [])
            fails = failures.get(ph, {})
            nfail = sum(fails.values())
            bad = bad or nfail > 0
            rss, fds, rss_end, fds_end = resources.get(ph, (0, 0, 0, 0))
            rows.append(f"| {ph} | {len(lat) + nfail:,} | {nfail}{' (' + ', '.join(f'{k}: {v}' for k, v in fails.items()) + ')' if fails else ''} | "
                        f"{pct(lat, 0.5):.2f} | {pct(lat, 0.99):.2f} | {pct(lat, 0.999):.2f} | {max(lat, default=float('nan')):.2f} | "
                        f"{rss / 1024:.0f}, {rss_end / 1024:.0f} | {fds}, {fds_end} |")
            out.write(f"faults.{ph} requests={len(lat) + nfail} failed={nfail} p50_ms={pct(lat, 0.5):.3f} "
                      f"p99_ms={pct(lat, 0.99):.3f} p999_ms={pct(lat, 0.999):.3f} max_ms={max(lat, default=0):.3f} "
                      f"rss_kib={rss} rss_end_kib={rss_end} fds={fds} fds_end={fds_end}\n")
            for text in attack_notes.get(ph, []):
                out.write(f"faults.{ph}.note {text}\n")
    print("\n".join(rows))
    for ph in PHASES:
        for text in attack_notes.get(ph, []):
            print(f"- {ph} phase, {text}")
    sys.exit(2 if bad else 0)


if __name__ == "__main__":
    asyncio.run(main())
