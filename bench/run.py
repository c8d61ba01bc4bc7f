"""Benchmarks B1-B9 against the project's fake OpenRouter (in its own process); writes bench/RESULTS.md.

    python bench/run.py                 # everything (about 10-15 minutes on 2 cores)
    python bench/run.py --only B1,B5    # a subset
    python bench/run.py --only B6       # prompt caching's saving (bench/prompt_cache.py); updates only B6's rows
    python bench/run.py --only B7       # a for_each map's wall time against its critical path; only B7's rows
    python bench/run.py --only B8       # the Batch API against the normal API: its own section of RESULTS.md
    python bench/run.py --only B9       # --executor ray with 1, 2, 4 workers (needs the extra and PostgreSQL); own section
    python bench/run.py --scale 0.1     # fewer records, for a quick look (targets still checked)
    python bench/run.py --only B6 --no-write   # one case, printed (bench/RESULTS.md left alone)

Every measured program is a separate process; CPU time and peak RSS come from os.wait4 for
exactly that process. "Startup" is the same command on an empty input file, subtracted where
the benchmark says startup is excluded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prompt_cache import prompt_cache
from ray_scaling import B9_MARKER, RAY_NOTES, ray_scaling, write_ray_section

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
B8_MARKER = "\n## B8: the Batch API against the normal API"
WORDS = [
    "invoice",
    "refund",
    "login",
    "password",
    "crash",
    "upload",
    "export",
    "billing",
    "account",
    "card",
    "charge",
    "twice",
    "error",
    "mobile",
    "desktop",
    "sync",
    "delay",
    "order",
    "shipping",
    "address",
    "plan",
    "upgrade",
    "cancel",
    "renewal",
    "receipt",
    "tax",
]


@dataclass
class Measured:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    exit_code: int
    run_s: float  # the program's own time for the records, startup excluded (its last "...s" on stderr)


def measure(command: list[str], env: dict[str, str]) -> Measured:
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode("utf-8", "replace") if process.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        raise SystemExit(f"{' '.join(command)} exited {code}:\n{stderr[-3000:]}")
    seconds = re.findall(r"(\d+\.\d+)s\b", stderr)
    run_s = float(seconds[-1]) if seconds else wall
    return Measured(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, code, run_s)


class FakeProcess:
    def __init__(self, latency_ms: float, batch_delay_ms: float = 200.0) -> None:
        self.process = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "runner.fake.server",
                "--latency-ms",
                str(latency_ms),
                "--batch-delay-ms",
                str(batch_delay_ms),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()

    def stats(self) -> dict:
        request = urllib.request.Request(self.base_url + "/_fake/stats", headers={"Authorization": "Bearer bench"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def __enter__(self) -> FakeProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.process.terminate()
        self.process.wait(10)


def write_records(path: Path, count: int) -> Path:
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            words = " ".join(WORDS[(index * 7 + offset * 3) % len(WORDS)] for offset in range(12))
            out.write(json.dumps({"text": f"Message {index}: {words}"}) + "\n")
    return path


def write_map_records(path: Path, count: int, elements: int) -> Path:
    """B7's records: a message and its `elements` line items, every line different (no cache hits)."""
    with path.open("w", encoding="utf-8") as out:
        for index in range(count):
            lines = [
                f"item {index}-{position}: {WORDS[(index + position) % len(WORDS)]}" for position in range(elements)
            ]
            out.write(json.dumps({"text": f"Order {index}", "lines": lines}) + "\n")
    return path


def runner_command(pipeline: str, inputs: Path, concurrency: int, db: Path, output: Path) -> list[str]:
    return [
        PYTHON, "-m", "runner", "run", f"bench/pipelines/{pipeline}.yaml", "--inputs", str(inputs),
        "--concurrency", str(concurrency), "--db", str(db), "--output", str(output),
    ]  # fmt: skip


def baseline_command(base_url: str, inputs: Path, concurrency: int, db: Path, output: Path) -> list[str]:
    return [
        PYTHON, str(BENCH / "baseline.py"), "--base-url", base_url, "--inputs", str(inputs),
        "--concurrency", str(concurrency), "--db", str(db), "--output", str(output),
    ]  # fmt: skip


def environment(base_url: str, work: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("OPENROUTER_", "PIPELINE_"))}
    env.update(OPENROUTER_API_KEY="bench", OPENROUTER_BASE_URL=base_url, PIPELINE_CACHE_DIR=str(work / "cache"))
    return env


class Bench:
    def __init__(self, work: Path, scale: float, repeat: int) -> None:
        self.work = work
        self.scale = scale
        self.repeat = repeat  # timings are the best of this many rounds: this machine's neighbours are noisy
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.batch_rows: list[tuple[str, str, str]] = []

    def scaled(self, count: int) -> int:
        return max(10, int(count * self.scale))

    def fresh(self, name: str) -> Path:
        path = self.work / name
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return path

    def record(self, bench: str, measure_name: str, value: float, unit: str, target: str, ok: bool | None) -> None:
        self.rows.append(
            {"bench": bench, "measure": measure_name, "value": value, "unit": unit, "target": target, "ok": ok}
        )
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{bench:3} {measure_name:52} {value:12.4f} {unit:10} {target:22} {verdict}", flush=True)

    def latency_hiding(self, with_rerun: bool) -> None:
        """B1 (and B5, which re-runs B1's finished run). Best of `repeat` rounds, runner and baseline alternating."""
        records = self.scaled(2000)
        calls = records * 3
        latency_s, concurrency = 0.1, 100
        inputs = write_records(self.work / "b1.jsonl", records)
        firsts, bases, agains, paid = [], [], [], 0
        with FakeProcess(latency_s * 1000) as fake:
            env = environment(fake.base_url, self.work)
            for round_number in range(self.repeat):
                db = self.fresh(f"b1-{round_number}.db")
                out = self.work / "b1.out.jsonl"
                # Startup is excluded: both programs report the time from their first record to their last.
                firsts.append(measure(runner_command("chain3", inputs, concurrency, db, out), env))
                bases.append(
                    measure(baseline_command(fake.base_url, inputs, concurrency, self.fresh("bl.db"), out), env)
                )
                if with_rerun:
                    billed_before = fake.stats()["billed_calls"]
                    agains.append(
                        measure(runner_command("chain3", inputs, concurrency, db, self.work / "b5.out.jsonl"), env)
                    )
                    paid += fake.stats()["billed_calls"] - billed_before
        first = min(firsts, key=lambda run: run.run_s)
        base = min(bases, key=lambda run: run.run_s)
        ideal = calls * latency_s / concurrency
        ours, theirs = ideal / first.run_s, ideal / base.run_s
        self.record("B1", f"baseline efficiency ({calls} calls, 100 ms, c=100)", theirs, "ratio", "reference", None)
        self.record("B1", "pipeline run efficiency", ours, "ratio", "reference", None)
        self.record("B1", "pipeline run time for the records (startup excluded)", first.run_s, "s", "info", None)
        self.record("B1", "pipeline / baseline efficiency", ours / theirs, "ratio", ">= 0.95", ours / theirs >= 0.95)
        if not with_rerun:
            return
        again = min(agains, key=lambda run: run.run_s)
        share = again.run_s / first.run_s
        self.record("B5", "paid calls when re-running the finished run", paid, "calls", "0", paid == 0)
        self.record("B5", "re-run time / first run time (startup excluded)", share, "ratio", "<= 0.10", share <= 0.10)
        self.record("B5", "re-run wall time including startup", again.wall_s, "s", "info", None)

    def overhead(self) -> None:
        """B2: CPU per call at latency 0."""
        records = self.scaled(6667)
        calls = records * 3
        concurrency = 64
        inputs = write_records(self.work / "b2.jsonl", records)
        empty = write_records(self.work / "empty.jsonl", 0)
        with FakeProcess(0) as fake:
            env = environment(fake.base_url, self.work)
            out = self.work / "b2.out.jsonl"
            startup = min(
                (
                    measure(runner_command("chain3", empty, concurrency, self.fresh("b2-empty.db"), out), env)
                    for _ in range(self.repeat)
                ),
                key=lambda run: run.cpu_s,
            )
            ours = min(
                (
                    measure(runner_command("chain3", inputs, concurrency, self.fresh("b2.db"), out), env)
                    for _ in range(self.repeat)
                ),
                key=lambda run: run.cpu_s,
            )
            base_startup = min(
                (
                    measure(baseline_command(fake.base_url, empty, concurrency, self.fresh("b2b-empty.db"), out), env)
                    for _ in range(self.repeat)
                ),
                key=lambda run: run.cpu_s,
            )
            base = min(
                (
                    measure(baseline_command(fake.base_url, inputs, concurrency, self.fresh("b2b.db"), out), env)
                    for _ in range(self.repeat)
                ),
                key=lambda run: run.cpu_s,
            )
            postgres = self.on_postgres(inputs, empty, concurrency, out, env)
        ours_ms = (ours.cpu_s - startup.cpu_s) / calls * 1000
        base_ms = (base.cpu_s - base_startup.cpu_s) / calls * 1000
        self.record("B2", f"baseline CPU per call ({calls} calls, c=64)", base_ms, "ms", "reference", None)
        self.record("B2", "pipeline run CPU per call, SQLite (startup excluded)", ours_ms, "ms", "reference", None)
        self.record(
            "B2", "pipeline run CPU per call, SQLite (startup included)", ours.cpu_s / calls * 1000, "ms", "info", None
        )
        self.record(
            "B2",
            "pipeline / baseline CPU per call, SQLite",
            ours_ms / base_ms,
            "ratio",
            "<= 2.0",
            ours_ms / base_ms <= 2.0,
        )
        if postgres is not None:
            pg_ms = (postgres[1].cpu_s - postgres[0].cpu_s) / calls * 1000
            self.record(
                "B2", "pipeline run CPU per call, PostgreSQL (startup excluded)", pg_ms, "ms", "reference", None
            )
            self.record(
                "B2",
                "pipeline / baseline CPU per call, PostgreSQL",
                pg_ms / base_ms,
                "ratio",
                "info (no target: the issue asks for the figure)",
                None,
            )
            self.record(
                "B2", "records time, PostgreSQL / SQLite", postgres[1].run_s / ours.run_s, "ratio", "info", None
            )

    def on_postgres(self, inputs, empty, concurrency, out, env) -> tuple[Measured, Measured] | None:
        """B2 again with the ledger in PostgreSQL (a fresh schema); the server's own CPU is not counted."""
        url = os.environ.get("PIPELINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=3, autocommit=True) as db:
                db.execute("DROP SCHEMA IF EXISTS bench_b2 CASCADE")
        except Exception as exc:
            self.notes.append(f"- B2 on PostgreSQL skipped: no server at {url} ({exc})")
            return None
        env = {**env, "PIPELINE_DB_SCHEMA": "bench_b2"}
        startup = measure(runner_command("chain3", empty, concurrency, url, out), env)
        measured = measure(runner_command("chain3", inputs, concurrency, url, out), env)
        with psycopg.connect(url, autocommit=True) as db:
            db.execute("DROP SCHEMA IF EXISTS bench_b2 CASCADE")
        return startup, measured

    def memory(self) -> None:
        """B3: peak RSS at 20,000 and 200,000 records."""
        small, large = self.scaled(20_000), self.scaled(200_000)
        with FakeProcess(0) as fake:
            env = environment(fake.base_url, self.work)
            peaks = {}
            for count in (small, large):
                inputs = write_records(self.work / f"b3-{count}.jsonl", count)
                result = measure(
                    runner_command("one_step", inputs, 64, self.fresh(f"b3-{count}.db"), self.work / "b3.out.jsonl"),
                    env,
                )
                peaks[count] = result.max_rss_mb
                self.record(
                    "B3",
                    f"peak RSS at {count} records (one step, latency 0)",
                    result.max_rss_mb,
                    "MB",
                    "<= 200",
                    result.max_rss_mb <= 200,
                )
                inputs.unlink()
        growth = peaks[large] / peaks[small] - 1
        self.record("B3", f"RSS growth {small} -> {large} records", growth * 100, "%", "<= 10", growth <= 0.10)

    def one_record(self) -> None:
        """B4: one record through a 5-step DAG with two branches, 200 ms a call."""
        latency_s = 0.2
        with FakeProcess(latency_s * 1000) as fake:
            env = environment(fake.base_url, self.work)
            script = (
                "import asyncio, json, sys, time\n"
                "from runner import load_pipeline\n"
                "from runner.settings import Settings\n"
                "pipeline = load_pipeline('bench/pipelines/dag5.yaml')\n"
                "settings = Settings.from_env(db=sys.argv[1])\n"
                "async def main():\n"
                "    async with pipeline.session(settings) as session:\n"
                "        await session.run({'text': 'warm the connection'}, key='warm')\n"
                "        started = time.perf_counter()\n"
                "        result = await session.run({'text': 'one record'}, key='measured')\n"
                "        print(json.dumps({'wall': time.perf_counter() - started, 'status': result.status}))\n"
                "asyncio.run(main())\n"
            )
            completed = subprocess.run(
                [PYTHON, "-c", script, str(self.fresh("b4.db"))],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            )
            wall = json.loads(completed.stdout.strip().splitlines()[-1])["wall"]
            cold = subprocess.run(
                [PYTHON, "-c", script.replace("        await session.run({'text': 'warm the connection'}, key='warm')\n", ""), str(self.fresh("b4c.db"))],
                env=env, cwd=ROOT, capture_output=True, text=True, check=True,
            )  # fmt: skip
            cold_wall = json.loads(cold.stdout.strip().splitlines()[-1])["wall"]
        critical = 4 * latency_s
        self.record(
            "B4",
            "one record, 5 steps, 2 branches: wall / critical path",
            wall / critical,
            "ratio",
            "<= 1.05",
            wall / critical <= 1.05,
        )
        self.record(
            "B4",
            "the same on a cold connection (first request of the process)",
            cold_wall / critical,
            "ratio",
            "info",
            None,
        )

    def map_fanout(self) -> None:
        """B7: a map step over 20 elements for 500 records, 100 ms a call, c=100.

        Every call is an element and a record's elements run together, so the critical path is the
        request cap's: calls x latency / concurrency (one record alone would take one latency).
        """
        records, elements = self.scaled(500), 20
        calls = records * elements
        latency_s, concurrency = 0.1, 100
        inputs = write_map_records(self.work / "b7.jsonl", records, elements)
        runs = []
        with FakeProcess(latency_s * 1000) as fake:
            env = environment(fake.base_url, self.work)
            for round_number in range(self.repeat):
                db = self.fresh(f"b7-{round_number}.db")
                billed = fake.stats()["billed_calls"]
                runs.append(measure(runner_command("map20", inputs, concurrency, db, self.work / "b7.out.jsonl"), env))
                if fake.stats()["billed_calls"] - billed != calls:
                    raise SystemExit(
                        f"B7: expected {calls} billed calls, the fake billed {fake.stats()['billed_calls'] - billed}"
                    )
        best = min(runs, key=lambda run: run.run_s)
        critical = calls * latency_s / concurrency
        self.record("B7", f"critical path ({calls} calls, 100 ms, c=100)", critical, "s", "reference", None)
        self.record("B7", "pipeline run time for the records (startup excluded)", best.run_s, "s", "info", None)
        self.record(
            "B7", "map of 20 elements x 500 records: wall / critical path", best.run_s / critical, "ratio",
            "<= 1.10", best.run_s / critical <= 1.10,
        )  # fmt: skip
        self.record("B7", "pipeline run CPU", best.cpu_s, "s", "info", None)

    def batch_api(self) -> None:
        """B8: the same dataset through the normal API and through the Batch API (--batch-api): cost and wall time.

        The fake answers a chat request in 100 ms and a batch in BATCH_DELAY_S; real batches take minutes,
        so the wall times show the runner's own overhead around the batches, not OpenRouter's queue.
        """
        records = self.scaled(1000)
        latency_s, concurrency, batch_delay_s, linger_s, poll_s = 0.1, 100, 2.0, 1.0, 1.0
        inputs = write_records(self.work / "b8.jsonl", records)
        out = self.work / "b8.out.jsonl"
        with FakeProcess(latency_s * 1000, batch_delay_s * 1000) as fake:
            env = environment(fake.base_url, self.work)
            before = fake.stats()
            sync = measure(runner_command("chain3", inputs, concurrency, self.fresh("b8-sync.db"), out), env)
            middle = fake.stats()
            batched_command = [
                *runner_command("chain3", inputs, concurrency, self.fresh("b8-batch.db"), out),
                "--batch-api", "--batch-linger", str(linger_s), "--batch-poll", str(poll_s),
            ]  # fmt: skip
            batched = measure(batched_command, env)
            after = fake.stats()
        sync_cost = middle["total_cost"] - before["total_cost"]
        batch_cost = after["batch_billed"] - middle["batch_billed"]
        chat_posts = after["chat_requests"] - middle["chat_requests"]
        calls = records * 3
        self.batch_rows = [
            ("records x steps", f"{records} x 3 ({calls} requests)", ""),
            ("normal API: cost (the fake's prices)", f"${sync_cost:.6f}", ""),
            ("Batch API: cost (billed by the fake's batches)", f"${batch_cost:.6f}", ""),
            ("Batch API / normal API cost", f"{batch_cost / sync_cost:.4f}", "0.5: the fake bills batches at half"),
            ("Batch API: requests sent to /chat/completions", str(chat_posts), "0"),
            ("Batch API: batches submitted", str(after["batches"] - middle["batches"]), ""),
            ("normal API: wall time (c=100, 100 ms a call)", f"{sync.wall_s:.2f} s", ""),
            (
                "Batch API: wall time",
                f"{batched.wall_s:.2f} s",
                f"3 steps x (linger {linger_s:.0f} s + batch {batch_delay_s:.0f} s + polls from {poll_s:.0f} s)",
            ),
            ("normal API: CPU", f"{sync.cpu_s:.2f} s", ""),
            ("Batch API: CPU", f"{batched.cpu_s:.2f} s", ""),
        ]
        for name, value, note in self.batch_rows:
            print(f"B8  {name:52} {value:>22}  {note}", flush=True)
        if batched.exit_code != 0 or chat_posts != 0:
            raise SystemExit(f"B8: the batch run exited {batched.exit_code} with {chat_posts} chat requests")

    def write_batch_section(self, command: str) -> None:
        """B8's own section of RESULTS.md, replacing an earlier one; the B1-B5 table is left as it is."""
        path = BENCH / "RESULTS.md"
        text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
        ray_section = text[text.index(B9_MARKER) :] if B9_MARKER in text else ""  # B9's, kept after B8's
        text = text.split(B9_MARKER)[0].split(B8_MARKER)[0].rstrip("\n") + "\n"
        lines = [
            B8_MARKER.lstrip("\n"),
            "",
            f"- command: `{command}`; date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            "- the same dataset (bench/pipelines/chain3.yaml: 3 steps, each with a JSON schema) through the normal API",
            "  and with `--batch-api`, each against a fresh database, one fake OpenRouter process (its own process)",
            "- the fake bills a batch at 50 % of its per-token prices, as OpenRouter typically does; real batches take",
            "  minutes to hours, so the Batch API's wall time here is the fake's delay plus the runner's lingering and",
            "  polling, not a forecast",
            "- one round each, on a 2-core machine shared with other jobs: wall and CPU times vary by 30 % and more",
            "",
            "| measure | value | note |",
            "| --- | ---: | --- |",
            *(f"| {name} | {value} | {note} |" for name, value, note in self.batch_rows),
        ]
        path.write_text(text + "\n" + "\n".join(lines) + "\n" + ray_section, encoding="utf-8")

    def write(self, command: str) -> None:
        cpu = "unknown"
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        lines = [
            "# Benchmark results",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
            f"- machine: {os.cpu_count()} cores, {cpu}, {platform.platform()}, Python {platform.python_version()}",
            f"- scale: {self.scale} (1.0 = the sizes the benchmarks name); timings are the best of {self.repeat} rounds,"
            " the runner and the baseline alternating (neighbours on this machine make single runs vary by 30 % and more)",
            "- the fake OpenRouter runs in its own process (`python -m runner.fake.server`); every measured program is"
            " another process, timed with os.wait4",
            "",
            "| bench | measure | value | unit | target | result |",
            "| --- | --- | ---: | --- | --- | --- |",
        ]
        for row in self.rows:
            verdict = "" if row["ok"] is None else ("pass" if row["ok"] else "**FAIL**")
            lines.append(
                f"| {row['bench']} | {row['measure']} | {row['value']:.4f} | {row['unit']} | {row['target']} | {verdict} |"
            )
        lines += ["", *self.notes]
        path = BENCH / "RESULTS.md"
        earlier = path.read_text(encoding="utf-8") if path.exists() else ""
        sections = [earlier.index(marker) for marker in (B8_MARKER, B9_MARKER) if marker in earlier]
        kept = earlier[min(sections) :] if sections else ""  # B8 and B9 write their own sections
        path.write_text("\n".join(lines) + "\n" + kept, encoding="utf-8")

    def merge(self, names: set[str]) -> None:
        """Replace only these benchmarks' rows in bench/RESULTS.md (after the table's last row), keeping the rest."""
        path = BENCH / "RESULTS.md"
        old = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in old if not any(line.startswith(f"| {name} |") for name in names)]
        first = next(index for index, line in enumerate(kept) if line.startswith("| "))
        last = first
        while last + 1 < len(kept) and kept[last + 1].startswith("| "):  # the results table, not a later one
            last += 1
        new = [
            f"| {row['bench']} | {row['measure']} | {row['value']:.4f} | {row['unit']} | {row['target']} | "
            + ("" if row["ok"] is None else ("pass" if row["ok"] else "**FAIL**"))
            + " |"
            for row in self.rows
        ]
        path.write_text("\n".join([*kept[: last + 1], *new, *kept[last + 1 :]]) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default="B1,B2,B3,B4,B5,B6,B7,B8", help="comma-separated subset of B1..B9")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the record counts (quick looks)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per timing; the best round counts")
    arguments = parser.parse_args()
    wanted = {name.strip().upper() for name in arguments.only.split(",")}
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as folder:
        bench = Bench(Path(folder), arguments.scale, arguments.repeat)
        if wanted & {"B1", "B5"}:
            bench.latency_hiding(with_rerun="B5" in wanted)
        if "B2" in wanted:
            bench.overhead()
        if "B4" in wanted:
            bench.one_record()
        if "B3" in wanted:
            bench.memory()
        if "B6" in wanted:
            prompt_cache(bench, FakeProcess, environment)
        if "B7" in wanted:
            bench.map_fanout()
        if "B8" in wanted:
            bench.batch_api()
        ray_rows = ray_scaling(bench, PYTHON, FakeProcess, environment, measure) if "B9" in wanted else []
        command = "python bench/run.py " + " ".join(sys.argv[1:])
        if arguments.no_write:
            pass
        elif bench.rows and wanted <= {"B6", "B7", "B8", "B9"}:
            bench.merge(wanted)  # the other benchmarks' rows stay as their last full run measured them
        elif bench.rows:
            bench.write(command)
        if not arguments.no_write and bench.batch_rows:
            bench.write_batch_section(command)
        if not arguments.no_write and ray_rows:
            write_ray_section(BENCH / "RESULTS.md", ray_rows, command, RAY_NOTES)
    failed = [row for row in bench.rows if row["ok"] is False]
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
