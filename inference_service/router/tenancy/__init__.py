"""Tenants: the keys that call the router, what each may do, how much, and what it used.

- ``scopes``: which scope each route needs (declared on the route, looked up once per request);
- ``keys``: who is calling (a key's digest looked up), and which models it may use;
- ``limits`` (per key: concurrency, requests and tokens per minute), ``ledger`` (usage per key,
  model and hour, kept in the router's database).

Everything a request needs is computed when the config is loaded (or reloaded), so the
per-request cost is a hash, a few dictionary lookups and a set membership test.
"""
