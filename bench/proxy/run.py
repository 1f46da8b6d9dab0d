#!/usr/bin/env python3
"""Proxy benchmark: weir-proxy and nginx side by side, one worker each, in front of the
same upstream (an nginx answering a fixed 200), driven by wrk with small keep-alive
requests. Reports throughput, CPU time per request of the proxy process(es) and latency
percentiles, and the ratios weir/nginx. Absolute numbers are noisy on a shared machine;
the ratios, measured in the same run, are what to compare.

With --plugins, compares plugin scenarios instead: weir-proxy with no plugin, with one
plugin whose trivial beforeRequest sets a header, and with two plugins using both hooks,
next to nginx+njs doing the same header work (bench/njs/weir.js, Debian
libnginx-mod-http-js), each proxy with one worker in front of the same upstream.

With --library, the library plugins of plugins/ in weir-proxy (one worker): the CPU each
adds per request, next to no plugin and to one empty beforeRequest, each configured as
its plugin.yaml with a benchmark config and requests that pass it (a valid key, a valid
token, a rate limit never reached), the Redis-backed ones against a local redis-server.

With --scaling, weir-proxy alone with 10, 1,000 and 10,000 Routes (distinct hosts and
path prefixes; requests go to the Route in the middle): CPU per request against the
10-Route figure, the time a changed configuration takes to be compiled, loaded and
swapped in, and the proxy's RSS.

With --memory, memory per client connection: 1,500 concurrent keep-alive connections
(wrk -c1500) through one nginx worker and one weir-proxy shard side by side; RSS idle,
at the peak of the load, and a minute after it ended.

Usage: bench/proxy/run.py [--plugins | --library | --scaling | --memory] [--binary PATH] [--rounds N]
                          [--duration S] [--connections C] [--markdown]
Needs nginx and wrk (Debian packages) and builds weir-proxy in release mode unless
--binary names one.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def cpu_seconds(pids):
    """User and system CPU time of processes, in seconds."""
    user = system = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        user += int(fields[11])
        system += int(fields[12])
    return user / CLOCK_TICKS, system / CLOCK_TICKS


def build_weir(args):
    """The weir-proxy binary: --binary, or a release build (honouring CARGO_TARGET_DIR)."""
    if args.binary:
        return Path(args.binary).resolve()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "weir-proxy"], cwd=ROOT, check=True)
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "weir-proxy"


def process_tree(pid):
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(c) for c in children]


NGINX_COMMON = """
worker_processes 1;
daemon off;
pid {dir}/{name}.pid;
error_log {dir}/{name}.error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/{name}-body;
    proxy_temp_path {dir}/{name}-proxy;
    fastcgi_temp_path {dir}/{name}-fastcgi;
    uwsgi_temp_path {dir}/{name}-uwsgi;
    scgi_temp_path {dir}/{name}-scgi;
    keepalive_requests 1000000;
{body}
}}
"""


def start_nginx(directory, name, body, main=""):
    config = Path(directory) / f"{name}.conf"
    config.write_text(main + NGINX_COMMON.format(dir=directory, name=name, body=body))
    return subprocess.Popen(["nginx", "-c", str(config), "-e", f"{directory}/{name}.error.log"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# The plugins of the --plugins scenarios (the same work as bench/plugin-runtime's).
ONE_PLUGIN = 'export default { beforeRequest(ctx) { ctx.upstream.headers.set("x-weir", "1"); } };'
BOTH_HOOKS = """export default {{
  beforeRequest(ctx) {{
    ctx.upstream.headers.set("x-request-id-{n}", ctx.request.requestId);
    ctx.state.p{n} = 1;
  }},
  afterResponse(ctx) {{
    ctx.response.headers.set("x-served-by-{n}", "weir");
  }},
}};"""

NJS_LOCATIONS = """
        location /none { proxy_pass http://backend; }
        location /one {
            proxy_set_header x-weir $weir_one;
            proxy_pass http://backend;
        }
        location /two {
            proxy_set_header x-request-id $weir_request_id;
            proxy_set_header x-request-id-2 $weir_request_id;
            js_header_filter weir.responseHeaders;
            proxy_pass http://backend;
        }"""


def plugin_yaml(name, code):
    indented = "".join(f"      {line}\n" for line in code.splitlines())
    return (f"---\napiVersion: weir.dev/v1alpha1\nkind: Plugin\nmetadata: {{name: {name}}}\n"
            f"spec:\n  timeoutMs: 1000\n  source:\n    code: |\n{indented}")


def weir_config(directory, name, upstream_port, plugins):
    """A config directory for weir-proxy: one Route to the upstream running `plugins`
    (name -> code)."""
    config = Path(directory) / name
    config.mkdir()
    listed = ", ".join(f"{{name: {p}}}" for p in plugins)
    route = ("apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: bench}\n"
             f"spec:\n  plugins: [{listed}]\n"
             f"  rules: [{{backends: [{{url: 'http://127.0.0.1:{upstream_port}'}}]}}]\n")
    (config / "route.yaml").write_text(route + "".join(plugin_yaml(p, c) for p, c in plugins.items()))
    return config


def start_weir(binary, config, port, admin_port, stdout=subprocess.DEVNULL):
    return subprocess.Popen(
        [str(binary), "--config", str(config), "--workers", "1", "--no-access-log",
         "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"],
        stdout=stdout, stderr=subprocess.DEVNULL)


def run_wrk(port, duration, connections, path="/", host=None, headers=()):
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    if host:
        command += ["-H", f"Host: {host}"]
    for header in headers:
        command += ["-H", header]
    out = subprocess.run(command + [f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    latency = {}
    for percentile in ("50", "75", "90", "99"):
        value, unit = re.search(rf"\s{percentile}%\s+([\d.]+)(us|ms|s)", out).groups()
        latency[percentile] = float(value) * {"us": 1, "ms": 1000, "s": 1_000_000}[unit]
    return {
        "requests": requests,
        "non_2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
        "latency_us": latency,
    }


def measure(pids, port, duration, connections, path="/", host=None, headers=()):
    user_before, system_before = cpu_seconds(pids)
    started = time.time()
    result = run_wrk(port, duration, connections, path, host, headers)
    elapsed = time.time() - started
    user, system = cpu_seconds(pids)
    result["rps"] = result["requests"] / elapsed
    result["user_us_per_request"] = (user - user_before) / result["requests"] * 1e6
    result["system_us_per_request"] = (system - system_before) / result["requests"] * 1e6
    result["cpu_us_per_request"] = result["user_us_per_request"] + result["system_us_per_request"]
    return result


def measure_rounds(targets, args):
    """Measures every target `name -> (pids, port, path[, headers])` once per round,
    alternating which goes first; returns the runs by name."""
    runs = {name: [] for name in targets}
    for round_number in range(args.rounds):
        order = list(targets) if round_number % 2 == 0 else list(reversed(targets))
        for name in order:
            pids, port, path, *headers = targets[name]
            runs[name].append(measure(pids, port, args.duration, args.connections, path,
                                      headers=headers[0] if headers else ()))
    return runs


def warm_up_and_measure(targets, args):
    """Warms every target up (2 s), exiting when one answers no 2xx (a request the proxy
    or a plugin refused), then measures them (`measure_rounds`)."""
    for name, (_, port, path, *headers) in targets.items():
        warm = run_wrk(port, 2, args.connections, path, headers=headers[0] if headers else ())
        if warm["non_2xx"] or warm["requests"] == 0:
            sys.exit(f"{name}: the warm-up failed: {warm}")
    return measure_rounds(targets, args)


def save_results(file, args, runs):
    """Writes the runs and their medians to bench/results/`file`; returns the medians."""
    summary = {name: summarize(r) for name, r in runs.items()}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / file).write_text(json.dumps({"settings": vars(args), "runs": runs, "summary": summary}, indent=2))
    return summary


def stop(processes):
    """SIGTERM to every process, then SIGKILL to any still running after 10 s."""
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def summarize(runs):
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in runs),
        "user_us_per_request": statistics.median(r["user_us_per_request"] for r in runs),
        "system_us_per_request": statistics.median(r["system_us_per_request"] for r in runs),
        "latency_us": {p: statistics.median(r["latency_us"][p] for r in runs) for p in ("50", "75", "90", "99")},
        "non_2xx": sum(r["non_2xx"] for r in runs),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for docs/performance.md")
    parser.add_argument("--plugins", action="store_true", help="plugin scenarios: weir-proxy vs nginx+njs")
    parser.add_argument("--library", action="store_true", help="the CPU each library plugin adds")
    parser.add_argument("--scaling", action="store_true", help="10, 1,000 and 10,000 Routes")
    parser.add_argument("--memory", action="store_true", help="memory per connection at wrk -c1500")
    parser.add_argument("--binary", help="a weir-proxy binary to measure instead of building one")
    args = parser.parse_args()
    if args.plugins:
        return plugin_scenarios(args)
    if args.library:
        return library_scenarios(args)
    if args.scaling:
        return scaling_scenarios(args)
    if args.memory:
        return memory_scenarios(args)
    for tool in ("nginx", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y nginx wrk")

    binary = build_weir(args)

    processes = []
    with tempfile.TemporaryDirectory() as directory:
        try:
            upstream_port, nginx_port, weir_port, admin_port = (free_port() for _ in range(4))
            processes.append(start_nginx(directory, "upstream",
                f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}"))
            nginx = start_nginx(directory, "proxy", f"""
    upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""")
            processes.append(nginx)
            config = weir_config(directory, "weir", upstream_port, {})
            weir = start_weir(binary, config, weir_port, admin_port)
            processes.append(weir)
            for port in (upstream_port, nginx_port, weir_port):
                wait_for_port(port)
            time.sleep(0.5)
            targets = {
                "nginx": (process_tree(nginx.pid), nginx_port, "/"),
                "weir": ([weir.pid], weir_port, "/"),
            }
            for name, (_, port, _) in targets.items():
                run_wrk(port, 2, args.connections)  # warm up
            runs = measure_rounds(targets, args)
        finally:
            stop(processes)

    summary = {name: summarize(r) for name, r in runs.items()}
    ratio = {
        "cpu_per_request": summary["weir"]["cpu_us_per_request"] / summary["nginx"]["cpu_us_per_request"],
        "rps": summary["weir"]["rps"] / summary["nginx"]["rps"],
        "p50": summary["weir"]["latency_us"]["50"] / summary["nginx"]["latency_us"]["50"],
        "p99": summary["weir"]["latency_us"]["99"] / summary["nginx"]["latency_us"]["99"],
    }
    result = {"settings": vars(args), "runs": runs, "summary": summary, "ratio_weir_over_nginx": ratio}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "proxy.json").write_text(json.dumps(result, indent=2))

    print(f"{'':8}{'req/s':>10}{'CPU µs/req':>12}{'user':>7}{'system':>8}{'p50 µs':>9}{'p75 µs':>9}{'p90 µs':>9}{'p99 µs':>9}")
    for name, s in summary.items():
        l = s["latency_us"]
        print(f"{name:8}{s['rps']:>10.0f}{s['cpu_us_per_request']:>12.1f}{s['user_us_per_request']:>7.1f}"
              f"{s['system_us_per_request']:>8.1f}{l['50']:>9.0f}{l['75']:>9.0f}{l['90']:>9.0f}{l['99']:>9.0f}")
    print(f"weir/nginx: CPU per request {ratio['cpu_per_request']:.2f}x, throughput {ratio['rps']:.2f}x, "
          f"p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x")
    if any(s["non_2xx"] for s in summary.values()):
        print("warning: some responses were not 2xx:", {n: s["non_2xx"] for n, s in summary.items()})
    if args.markdown:
        print()
        print("| proxy | req/s | CPU µs/req | of which user | of which system | p50 µs | p90 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, s in summary.items():
            l = s["latency_us"]
            print(f"| {name} | {s['rps']:.0f} | {s['cpu_us_per_request']:.1f} | {s['user_us_per_request']:.1f} "
                  f"| {s['system_us_per_request']:.1f} | {l['50']:.0f} | {l['90']:.0f} | {l['99']:.0f} |")


def plugin_scenarios(args):
    if not Path("/usr/lib/nginx/modules/ngx_http_js_module.so").exists():
        sys.exit("njs is missing: apt-get install -y libnginx-mod-http-js")
    binary = build_weir(args)
    processes = []
    targets = {}
    with tempfile.TemporaryDirectory() as directory:
        try:
            upstream_port, njs_port = free_port(), free_port()
            processes.append(start_nginx(directory, "upstream",
                f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}"))
            njs = start_nginx(directory, "njs", f"""
    js_path {ROOT / "bench" / "njs"};
    js_import weir from weir.js;
    js_set $weir_one weir.setHeader;
    js_set $weir_request_id weir.requestId;
    js_var $weir_state;
    upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{njs_port};
        proxy_http_version 1.1;
        proxy_set_header Connection "";{NJS_LOCATIONS}
    }}""", main="load_module /usr/lib/nginx/modules/ngx_http_js_module.so;\n")
            processes.append(njs)
            wait_for_port(upstream_port)
            wait_for_port(njs_port)
            scenarios = {
                "none": {},
                "one": {"one": ONE_PLUGIN},
                "two": {"p1": BOTH_HOOKS.format(n=1), "p2": BOTH_HOOKS.format(n=2)},
            }
            for scenario, plugins in scenarios.items():
                port, admin_port = free_port(), free_port()
                config = weir_config(directory, f"weir-{scenario}", upstream_port, plugins)
                weir = start_weir(binary, config, port, admin_port)
                processes.append(weir)
                wait_for_port(port)
                targets[f"weir {scenario}"] = ([weir.pid], port, "/")
            time.sleep(0.5)
            for scenario in scenarios:
                targets[f"nginx+njs {scenario}"] = (process_tree(njs.pid), njs_port, f"/{scenario}")
            runs = warm_up_and_measure(targets, args)
        finally:
            stop(processes)

    summary = save_results("proxy-plugins.json", args, runs)
    print(f"{'':18}{'req/s':>10}{'CPU µs/req':>12}{'added':>8}{'p50 µs':>9}{'p99 µs':>9}")
    rows = []
    for name, s in summary.items():
        base = summary[name.rsplit(" ", 1)[0] + " none"]["cpu_us_per_request"]
        added = s["cpu_us_per_request"] - base
        rows.append((name, s, added))
        l = s["latency_us"]
        print(f"{name:18}{s['rps']:>10.0f}{s['cpu_us_per_request']:>12.1f}{added:>+8.1f}{l['50']:>9.0f}{l['99']:>9.0f}")
    if any(s["non_2xx"] for s in summary.values()):
        print("warning: some responses were not 2xx:", {n: s["non_2xx"] for n, s in summary.items()})
    if args.markdown:
        print()
        print("| proxy, scenario | req/s | CPU µs/req | added by plugins | p50 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, s, added in rows:
            l = s["latency_us"]
            print(f"| {name} | {s['rps']:.0f} | {s['cpu_us_per_request']:.1f} | {added:+.1f} | {l['50']:.0f} | {l['99']:.0f} |")


# The library scenarios: plugin directory (None: no plugin), the config the benchmark
# gives it (merged over its plugin.yaml's), the request headers that pass it, and
# whether it runs against Redis.
API_KEY = "bench-key-0123456789abcdef0123456789abcdef"


def jwt_case(alg):
    """jwt-auth checking a token signed (by PyJWT, scripts/requirements-test.txt) with a
    fresh RSA 2048 or P-256 key, configured as PEM: the cost of verifying, without the
    JWKS (fetched once in a real deployment) of its example config."""
    import jwt
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048) if alg == "RS256" else ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    claims = {"sub": "bench", "iss": "https://idp.bench.test/", "aud": "bench", "roles": ["reader"],
              "exp": int(time.time()) + 7 * 86400}
    token = jwt.encode(claims, key, algorithm=alg, headers={"kid": "bench"})
    config = {
        "algorithms": [alg],
        "keys": [{"kid": "bench", "pem": pem}],
        "jwksUri": None,
        "issuers": ["https://idp.bench.test/"],
        "audiences": ["bench"],
        "forwardClaims": {"x-user-id": "sub"},
    }
    return ("jwt-auth", config, (f"authorization: Bearer {token}",), False)


def library_cases():
    import hashlib
    return {
        "no plugin": (None, None, (), False),
        "empty beforeRequest": ("empty", None, (), False),
        "api-key": ("api-key", {
            "keys": [{"hash": hashlib.sha256(API_KEY.encode()).hexdigest(), "id": "bench", "scopes": ["read"]}],
            "lookup": "config",
        }, (f"x-api-key: {API_KEY}",), False),
        "request-log": ("request-log", {"sampleRate": 1}, ("user-agent: wrk",), False),
        "jwt-auth RS256": jwt_case("RS256"),
        "jwt-auth ES256": jwt_case("ES256"),
        "rate-limit, in memory": ("rate-limit", RATE_LIMIT_NEVER_REACHED, (), False),
        "rate-limit, Redis": ("rate-limit", RATE_LIMIT_NEVER_REACHED, (), True),
    }


# A sliding window per client (wrk is one client: one hot counter) never reached.
RATE_LIMIT_NEVER_REACHED = {"limit": 1_000_000_000, "windowSeconds": 60, "by": ["ip"],
                            "tierBy": None, "tiers": None}


def library_config(directory, name, upstream_port, plugin, config):
    """A config directory with one Route to the upstream running `plugin` (a directory of
    plugins/, or "empty") with `config` merged over its plugin.yaml's (a None removes a
    field, as in a JSON merge patch)."""
    import yaml
    target = Path(directory) / name
    target.mkdir()
    listed = ""
    if plugin == "empty":
        (target / "plugin.yaml").write_text(plugin_yaml("empty", "export default { beforeRequest() {} };"))
        listed = "{name: empty}"
    elif plugin:
        documents = list(yaml.safe_load_all((ROOT / "plugins" / plugin / "plugin.yaml").read_text()))
        for document in documents:
            if document and document.get("kind") == "Plugin":
                merged = {**document["spec"].get("config", {}), **(config or {})}
                document["spec"]["config"] = {k: v for k, v in merged.items() if v is not None}
                document["spec"]["timeoutMs"] = 1000
        (target / "plugin.yaml").write_text(yaml.safe_dump_all(documents))
        listed = f"{{name: {plugin}}}"
    (target / "route.yaml").write_text(
        "apiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {name: bench}\n"
        f"spec:\n  plugins: [{listed}]\n"
        f"  rules: [{{backends: [{{url: 'http://127.0.0.1:{upstream_port}'}}]}}]\n")
    return target


def library_scenarios(args):
    for tool in ("nginx", "wrk", "redis-server"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: apt-get install -y nginx wrk redis-server")
    binary = build_weir(args)
    processes = []
    targets = {}
    cases = library_cases()
    with tempfile.TemporaryDirectory() as directory:
        try:
            upstream_port, redis_port = free_port(), free_port()
            processes.append(start_nginx(directory, "upstream",
                f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}"))
            processes.append(subprocess.Popen(
                ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for_port(upstream_port)
            wait_for_port(redis_port)
            for index, (name, (plugin, config, headers, redis)) in enumerate(cases.items()):
                port, admin_port = free_port(), free_port()
                config_dir = library_config(directory, f"case-{index}", upstream_port, plugin, config)
                command = [str(binary), "--config", str(config_dir), "--workers", "1", "--no-access-log",
                           "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"]
                if redis:
                    command += ["--plugin-redis-url", f"redis://127.0.0.1:{redis_port}"]
                weir = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                processes.append(weir)
                wait_for_port(port)
                targets[name] = ([weir.pid], port, "/", headers)
            runs = warm_up_and_measure(targets, args)
        finally:
            stop(processes)

    summary = save_results("proxy-library.json", args, runs)
    base = summary["no plugin"]["cpu_us_per_request"]
    empty = summary["empty beforeRequest"]["cpu_us_per_request"] - base
    print(f"{'':22}{'req/s':>10}{'CPU µs/req':>12}{'added':>8}{'/empty':>8}{'p50 µs':>9}{'p99 µs':>9}")
    rows = []
    for name, s in summary.items():
        added = s["cpu_us_per_request"] - base
        rows.append((name, s, added))
        l = s["latency_us"]
        print(f"{name:22}{s['rps']:>10.0f}{s['cpu_us_per_request']:>12.1f}{added:>+8.1f}"
              f"{added / empty if empty > 0 else 0:>8.1f}{l['50']:>9.0f}{l['99']:>9.0f}")
    if any(s["non_2xx"] for s in summary.values()):
        print("warning: some responses were not 2xx:", {n: s["non_2xx"] for n, s in summary.items()})
    if args.markdown:
        print()
        print("| scenario | req/s | CPU µs/req | added by the plugin | × an empty hook | p50 µs | p99 µs |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for name, s, added in rows:
            l = s["latency_us"]
            print(f"| {name} | {s['rps']:.0f} | {s['cpu_us_per_request']:.1f} | {added:+.1f} "
                  f"| {added / empty if empty > 0 else 0:.1f} | {l['50']:.0f} | {l['99']:.0f} |")


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def routes_yaml(count, upstream_port):
    """`count` Routes, each with its own host and path prefix, to the one upstream."""
    return "".join(
        f"---\napiVersion: weir.dev/v1alpha1\nkind: Route\nmetadata: {{name: r{i}}}\n"
        f"spec:\n  hosts: [host-{i}.bench.example]\n"
        f"  rules: [{{matches: [{{path: {{type: Prefix, value: /svc-{i}}}}}], "
        f"backends: [{{url: 'http://127.0.0.1:{upstream_port}'}}]}}]\n"
        for i in range(count))


def reload_seconds(log_lines, since):
    """Seconds from `since` to the next "configuration reloaded" line, less the file
    watcher's 200 ms debounce: compiling, loading and swapping in the new snapshot."""
    deadline = time.time() + 300
    while time.time() < deadline:
        if any('"configuration reloaded"' in line for line in list(log_lines)):
            return time.time() - since - 0.2
        time.sleep(0.005)
    raise RuntimeError("the proxy did not reload")


def scaling_scenarios(args):
    import threading
    binary = build_weir(args)
    processes = []
    results = {}
    with tempfile.TemporaryDirectory() as directory:
        try:
            upstream_port = free_port()
            processes.append(start_nginx(directory, "upstream",
                f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}"))
            wait_for_port(upstream_port)
            for count in (10, 1_000, 10_000):
                config = Path(directory) / f"routes-{count}"
                config.mkdir()
                (config / "routes.yaml").write_text(routes_yaml(count, upstream_port))
                port, admin_port = free_port(), free_port()
                weir = subprocess.Popen(
                    [str(binary), "--config", str(config), "--workers", "1", "--no-access-log",
                     "--listen", f"127.0.0.1:{port}", "--admin-listen", f"127.0.0.1:{admin_port}"],
                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                processes.append(weir)
                lines = []
                threading.Thread(target=lambda: lines.extend(weir.stdout), daemon=True).start()
                wait_for_port(port, timeout=300)
                middle = count // 2
                host, path = f"host-{middle}.bench.example", f"/svc-{middle}/x"
                warm = run_wrk(port, 2, args.connections, path, host)
                if warm["non_2xx"] or warm["requests"] == 0:
                    sys.exit(f"{count} routes: the warm-up failed: {warm}")
                runs = [measure([weir.pid], port, args.duration, args.connections, path, host)
                        for _ in range(args.rounds)]
                # A changed file: the whole directory is compiled, loaded and swapped in.
                changed = time.time()
                (config / "routes.yaml").write_text(routes_yaml(count, upstream_port) + "# changed\n")
                reload = reload_seconds(lines, changed)
                results[count] = {"summary": summarize(runs), "reload_s": reload, "rss_kib": rss_kib(weir.pid)}
                stop([weir])
                processes.remove(weir)
        finally:
            stop(processes)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "proxy-scaling.json").write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    base = results[10]["summary"]["cpu_us_per_request"]
    print("| Routes | CPU µs/req | vs 10 Routes | p50 µs | p99 µs | reload (compile, load, swap) | RSS MiB |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for count, r in results.items():
        s = r["summary"]
        print(f"| {count:,} | {s['cpu_us_per_request']:.1f} | {s['cpu_us_per_request'] / base:.2f}x "
              f"| {s['latency_us']['50']:.0f} | {s['latency_us']['99']:.0f} | {r['reload_s'] * 1000:.0f} ms "
              f"| {r['rss_kib'] / 1024:.1f} |")


def memory_scenarios(args):
    import threading
    binary = build_weir(args)
    connections = 1500
    processes = []
    with tempfile.TemporaryDirectory() as directory:
        try:
            upstream_port, nginx_port, weir_port, admin_port = (free_port() for _ in range(4))
            processes.append(start_nginx(directory, "upstream",
                f"    server {{ listen 127.0.0.1:{upstream_port}; location / {{ return 200 'ok'; }} }}",
                main="worker_rlimit_nofile 16384;\n"))
            nginx = start_nginx(directory, "proxy", f"""
    upstream backend {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{nginx_port};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}""", main="worker_rlimit_nofile 16384;\n")
            processes.append(nginx)
            weir = start_weir(binary, weir_config(directory, "weir", upstream_port, {}), weir_port, admin_port)
            processes.append(weir)
            for port in (upstream_port, nginx_port, weir_port):
                wait_for_port(port)
            time.sleep(1)
            worker = [p for p in process_tree(nginx.pid) if p != nginx.pid][0]
            targets = {"nginx": (worker, nginx_port), "weir": (weir.pid, weir_port)}
            results = {}
            for name, (pid, port) in targets.items():
                run_wrk(port, 2, 32)  # warm up with a few connections
                idle = rss_kib(pid)
                peak = [idle]
                done = threading.Event()

                def sample():
                    while not done.is_set():
                        peak.append(rss_kib(pid))
                        time.sleep(0.2)
                sampler = threading.Thread(target=sample)
                sampler.start()
                load = run_wrk(port, args.duration, connections)
                done.set()
                sampler.join()
                time.sleep(60)
                after = rss_kib(pid)
                results[name] = {
                    "idle_kib": idle, "peak_kib": max(peak), "after_60s_kib": after,
                    "per_connection_kib": (max(peak) - idle) / connections,
                    "requests": load["requests"], "non_2xx": load["non_2xx"],
                    "socket_errors": load["socket_errors"],
                }
        finally:
            stop(processes)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "proxy-memory.json").write_text(json.dumps({"settings": vars(args), "results": results}, indent=2))
    print(f"| proxy | RSS idle MiB | RSS at {connections} connections MiB | KiB per connection | RSS 60 s after MiB | after / idle |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, r in results.items():
        print(f"| {name} | {r['idle_kib'] / 1024:.1f} | {r['peak_kib'] / 1024:.1f} | {r['per_connection_kib']:.1f} "
              f"| {r['after_60s_kib'] / 1024:.1f} | {r['after_60s_kib'] / r['idle_kib']:.2f} |")
    for name, r in results.items():
        if r["non_2xx"] or r["socket_errors"]:
            print(f"warning: {name}: {r['non_2xx']} non-2xx, socket errors: {r['socket_errors']}")


if __name__ == "__main__":
    main()
