"""The OpenRouter protocol: pure request bodies (request), replies and usage (reply), reply checking:
JSON and schema (verdict), requests in flight (flow), the HTTP client (client, the only module that
sees httpx/aiohttp exceptions), the model catalogue (catalog) and what a reply cost (billing).

May import: runner.errors, runner.spec, runner.plan. Inside, one way: request <- catalog <- billing;
flow, reply <- client; reply <- billing.
"""
