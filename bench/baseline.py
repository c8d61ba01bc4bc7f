"""The yardstick: the leanest hand-written client for the work of bench/pipelines/chain3.yaml.

asyncio + aiohttp + json + one compiled jsonschema validator per step + sqlite3 with batched
inserts, and nothing else: no retries, no fallbacks, no cache, no budget. The benchmark runs it
against the same fake server, on the same records, in the same session as `pipeline run`.

    python bench/baseline.py --base-url URL --inputs records.jsonl --concurrency 100 --db out.db --output out.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time

import aiohttp
from jsonschema import Draft202012Validator

MODEL = "google/gemini-2.5-flash-lite"
SCHEMAS = {
    "classify": {
        "type": "object",
        "additionalProperties": False,
        "required": ["category", "confidence"],
        "properties": {
            "category": {"type": "string", "enum": ["billing", "bug", "account", "other"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
    "extract": {
        "type": "object",
        "additionalProperties": False,
        "required": ["entities"],
        "properties": {"entities": {"type": "array", "items": {"type": "string"}}},
    },
    "summarize": {
        "type": "object",
        "additionalProperties": False,
        "required": ["summary"],
        "properties": {"summary": {"type": "string"}},
    },
}
VALIDATORS = {step: Draft202012Validator(schema) for step, schema in SCHEMAS.items()}


class Ledger:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS cost_records (id TEXT PRIMARY KEY, record_key TEXT, step TEXT, model TEXT,"
            " prompt_tokens INTEGER, completion_tokens INTEGER, cost_usd REAL, created_at REAL)"
        )
        self.rows: list[tuple] = []

    def add(self, row: tuple) -> None:
        self.rows.append(row)
        if len(self.rows) >= 500:
            self.flush()

    def flush(self) -> None:
        self.db.executemany("INSERT INTO cost_records VALUES (?, ?, ?, ?, ?, ?, ?, ?)", self.rows)
        self.db.commit()
        self.rows.clear()


async def call(http: aiohttp.ClientSession, url: str, slots: asyncio.Semaphore, step: str, prompt: str) -> dict:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        "max_tokens": 400,
        "reasoning": {"effort": "none"},
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": step, "strict": True, "schema": SCHEMAS[step]},
        },
    }
    async with slots, http.post(url, data=json.dumps(body)) as response:
        reply = json.loads(await response.read())
    return reply


async def one_record(http, url, slots, ledger: Ledger, key: int, record: dict) -> dict:
    outputs = {}
    text = record["text"]
    prompts = {
        "classify": lambda: f"Classify this message: {text}",
        "extract": lambda: f"Category {outputs['classify']['category']}. List the entities in: {text}",
        "summarize": lambda: (
            f"Summarize for the {outputs['classify']['category']} team: {text}\n"
            f"Entities: {', '.join(outputs['extract']['entities'])}\n"
        ),
    }
    for step in ("classify", "extract", "summarize"):
        reply = await call(http, url, slots, step, prompts[step]())
        value = json.loads(reply["choices"][0]["message"]["content"])
        VALIDATORS[step].validate(value)
        usage = reply["usage"]
        ledger.add(
            (
                reply["id"],
                str(key),
                step,
                reply["model"],
                usage["prompt_tokens"],
                usage["completion_tokens"],
                usage["cost"],
                time.time(),
            )
        )
        outputs[step] = value
    return {
        "key": key,
        "status": "ok",
        "output": {"category": outputs["classify"]["category"], "summary": outputs["summarize"]["summary"]},
    }


async def main(arguments: argparse.Namespace) -> None:
    ledger = Ledger(arguments.db)
    slots = asyncio.Semaphore(arguments.concurrency)
    url = arguments.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=arguments.concurrency)
    window = asyncio.Semaphore(arguments.concurrency * 2)
    started = time.monotonic()
    async with aiohttp.ClientSession(headers=headers, connector=connector) as http:
        with open(arguments.inputs, encoding="utf-8") as source, open(arguments.output, "w", encoding="utf-8") as out:
            tasks = set()

            async def run(key: int, record: dict) -> None:
                try:
                    line = await one_record(http, url, slots, ledger, key, record)
                    out.write(json.dumps(line) + "\n")
                finally:
                    window.release()

            for key, line in enumerate(source, start=1):
                await window.acquire()
                task = asyncio.create_task(run(key, json.loads(line)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.gather(*tasks)
    ledger.flush()
    print(f"records done in {time.monotonic() - started:.2f}s", file=sys.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--inputs", required=True)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--db", required=True)
    parser.add_argument("--output", required=True)
    asyncio.run(main(parser.parse_args()))
