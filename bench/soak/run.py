#!/usr/bin/env python3
"""Soak benchmark: one weir-proxy (release build, standalone mode, two shards) under
mixed traffic for a long run (10 minutes by default): honest keep-alive load through
plugins (a header plugin on every request, a cache-using plugin on /cached), hostile
clients at the same time (slowloris connections, smuggling-shaped and oversized
requests, garbage bytes, HTTP/2 prefaces that stop), and a configuration reload every
few seconds. Samples the proxy's RSS, open sockets (clients, upstreams, listeners) and CPU
time every few seconds.

Reports: honest requests and their errors (must be 0: a hostile client's own refusals
are counted apart), hostile attempts and how the proxy answered them, reloads, and
memory and sockets over time. Writes bench/results/soak.json and the plot docs/soak.svg
(RSS and open sockets over time) used by docs/performance.md.

Usage: bench/soak/run.py [--minutes M] [--binary PATH] [--connections C]
Needs nginx and wrk (Debian packages).
"""

import argparse
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench" / "proxy"))
import run as proxy_bench  # noqa: E402  (the proxy benchmark's helpers)

# Every request names its host: wrk.format at load time knows none yet.
WRK_SCRIPT = """
local requests = {
  wrk.format("GET", "/", {["Host"] = "soak.local"}),
  wrk.format("GET", "/api/a?x=1", {["Host"] = "soak.local"}),
  wrk.format("GET", "/", {["Host"] = "cached.soak"}),
  wrk.format("POST", "/api/b", {["Host"] = "soak.local", ["Content-Type"] = "application/json"}, '{"a":1}'),
}
local i = 0
request = function()
  i = i + 1
  return requests[(i % #requests) + 1]
end
"""

HEADER_PLUGIN = ('export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-soak", "1"); },'
                 ' afterResponse(ctx) { ctx.response.headers.set("x-served-by", "weir"); } };')
CACHE_PLUGIN = """export default { async beforeRequest(ctx) {
  const hits = Number((await ctx.services.cache.get("hits")) ?? 0) + 1;
  await ctx.services.cache.set("hits", String(hits), 60);
  ctx.response.headers.set("x-hits", String(hits));
} };"""


def write_config(config, upstream_port, generation):
    """The Routes and Plugins; `generation` changes a direct response so every write is a
    real reload."""
    plugins = proxy_bench.plugin_yaml("header", HEADER_PLUGIN) + proxy_bench.plugin_yaml("cache", CACHE_PLUGIN)
    upstream = f"http://127.0.0.1:{upstream_port}"
    routes = (
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: soak}\n"
        "spec:\n  plugins: [{name: header}]\n  rules:\n"
        f"  - backends: [{{url: '{upstream}'}}]\n"
        f"  - matches: [{{path: {{type: Exact, value: /generation}}}}]\n"
        f"    directResponse: {{status: 200, body: '{generation}'}}\n"
        "---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: cached}\n"
        "spec:\n  hosts: [cached.soak]\n  plugins: [{name: cache}]\n"
        f"  rules: [{{backends: [{{url: '{upstream}'}}]}}]\n"
    )
    temporary = config / ".soak.yaml.tmp"
    temporary.write_text(plugins + routes)
    temporary.rename(config / "soak.yaml")


HOSTILE = {
    "smuggling": b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 6\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nG",
    "oversized head": b"GET / HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 100_000 + b"\r\n\r\n",
    "bad chunk": b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    "garbage": bytes(range(256)) * 4,
    "half preface": b"PRI * HTTP/2.0\r\n",
    "path traversal": b"GET /a/..%5c..%5cetc HTTP/1.1\r\nhost: x\r\n\r\n",
}


class Hostile(threading.Thread):
    """Clients that misbehave for the whole run: one-shot hostile requests in a loop, and
    slowloris connections that dribble a head and are replaced when the proxy closes them."""

    def __init__(self, port, stop):
        super().__init__(daemon=True)
        self.port, self.stop = port, stop
        self.answers = {}
        self.slowloris_closed = 0

    def one_shot(self, name, payload):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as s:
                s.sendall(payload)
                answer = s.recv(64)
        except OSError:
            answer = b""
        status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed"
        key = f"{name}: {status}"
        self.answers[key] = self.answers.get(key, 0) + 1

    def run(self):
        slow = []
        while not self.stop.is_set():
            for name, payload in HOSTILE.items():
                self.one_shot(name, payload)
            while len(slow) < 50:
                try:
                    s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                    s.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n")
                    s.setblocking(False)
                    slow.append(s)
                except OSError:
                    break
            for s in list(slow):
                try:
                    s.send(b"x-slow: 1\r\n")
                    if s.recv(1) == b"":
                        raise OSError("closed")
                except BlockingIOError:
                    pass
                except OSError:
                    self.slowloris_closed += 1
                    slow.remove(s)
                    s.close()
            time.sleep(1)
        for s in slow:
            s.close()


def open_sockets(pid):
    """Sockets the process holds: client connections, upstream connections, listeners."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += fd.readlink().name.startswith("socket:")
        except OSError:
            pass
    return count


def svg_plot(samples, path):
    """RSS (MiB) and open sockets over time, as a self-contained SVG."""
    width, height, pad = 720, 300, 50
    t_max = max(s["t"] for s in samples) or 1
    series = [("RSS MiB", "rss_mib", "#1f77b4"), ("open sockets", "sockets", "#d62728")]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="black"/>',
             f'<text x="{width / 2}" y="{height - 12}" text-anchor="middle">minutes</text>']
    for minute in range(int(t_max // 60) + 1):
        x = pad + (width - 2 * pad) * minute * 60 / t_max
        parts.append(f'<text x="{x:.0f}" y="{height - pad + 15}" text-anchor="middle">{minute}</text>')
    for index, (label, key, colour) in enumerate(series):
        top = max(s[key] for s in samples) * 1.1 or 1
        points = " ".join(
            f"{pad + (width - 2 * pad) * s['t'] / t_max:.1f},{height - pad - (height - 2 * pad) * s[key] / top:.1f}"
            for s in samples)
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{points}"/>')
        parts.append(f'<text x="{pad + 10 + 260 * index}" y="20" fill="{colour}">{label} (top of scale {top:.0f})</text>')
    parts.append("</svg>")
    Path(path).write_text("\n".join(parts) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--reload-every", type=float, default=5, help="seconds between reloads")
    parser.add_argument("--sample-every", type=float, default=5, help="seconds between samples")
    parser.add_argument("--binary", help="a weir-proxy binary instead of a release build")
    args = parser.parse_args()
    binary = proxy_bench.build_weir(args)
    with tempfile.TemporaryDirectory() as directory:
        directory = Path(directory)
        upstream_port, port, admin_port = (proxy_bench.free_port() for _ in range(3))
        upstream = proxy_bench.start_nginx(
            directory, "upstream",
            f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}")
        config = directory / "config"
        config.mkdir()
        write_config(config, upstream_port, 0)
        weir = subprocess.Popen(
            [str(binary), "--config", str(config), "--workers", "2", "--no-access-log",
             "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}",
             "--header-read-timeout", "10s"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            proxy_bench.wait_for_port(upstream_port)
            proxy_bench.wait_for_port(port)
            script = directory / "mixed.lua"
            script.write_text(WRK_SCRIPT)
            duration = int(args.minutes * 60)
            wrk = subprocess.Popen(
                ["wrk", "-t2", f"-c{args.connections}", f"-d{duration}s", "-s", str(script),
                 f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True)
            stop = threading.Event()
            hostile = Hostile(port, stop)
            hostile.start()
            started = time.time()
            samples, reloads, next_reload = [], 0, started + args.reload_every
            cpu_before = proxy_bench.cpu_seconds([weir.pid])
            while wrk.poll() is None:
                now = time.time()
                if now >= next_reload:
                    reloads += 1
                    write_config(config, upstream_port, reloads)
                    next_reload = now + args.reload_every
                user, system = proxy_bench.cpu_seconds([weir.pid])
                samples.append({
                    "t": round(now - started, 1),
                    "rss_mib": round(proxy_bench.rss_kib(weir.pid) / 1024, 1),
                    "sockets": open_sockets(weir.pid),
                    "cpu_seconds": round(user + system - sum(cpu_before), 1),
                })
                time.sleep(args.sample_every)
            stop.set()
            hostile.join(timeout=60)
            out = wrk.stdout.read()
            requests = int(re.search(r"(\d+) requests in", out).group(1))
            non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            socket_errors = re.search(r"Socket errors: (.*)", out)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/generation", timeout=30) as answer:
                generation = answer.read().decode()
            result = {
                "minutes": args.minutes,
                "honest_requests": requests,
                "honest_non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
                "honest_socket_errors": socket_errors.group(1) if socket_errors else "none",
                "hostile_answers": hostile.answers,
                "slowloris_connections_closed_by_the_proxy": hostile.slowloris_closed,
                "reloads": reloads,
                "last_generation_served": generation,
                "proxy_alive": weir.poll() is None,
                "rss_mib": {"first": samples[0]["rss_mib"], "max": max(s["rss_mib"] for s in samples),
                            "last": samples[-1]["rss_mib"]},
                "samples": samples,
            }
        finally:
            proxy_bench.stop([weir, upstream])
    (ROOT / "bench" / "results" / "soak.json").write_text(json.dumps(result, indent=2) + "\n")
    svg_plot(result["samples"], ROOT / "docs" / "soak.svg")
    summary = {k: v for k, v in result.items() if k != "samples"}
    print(json.dumps(summary, indent=2))
    healthy = result["proxy_alive"] and result["honest_non_2xx"] == 0 and result["last_generation_served"] == str(reloads)
    sys.exit(0 if healthy else 1)


if __name__ == "__main__":
    main()
