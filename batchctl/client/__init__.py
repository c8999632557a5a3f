"""The package's one client of the SQL API (sql/, docs/sql-api.md): a method per SQL function,
named after it, in two flavours with the same methods where both have one.

- rows, summary: the typed rows the functions return and the arguments some take.
- calls: each call's statement, parameters and reading of its rows, written once.
- sync.Client: over a psycopg Connection (the command line, the lead import, the tests).
- aio.AsyncClient: over a pool, retrying lost connections, or over one async connection (the
  daemon, the webhook receiver, the simulator, the reports).
"""
