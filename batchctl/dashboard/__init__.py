"""`batchctl dashboard`: the operator dashboard in the browser (docs/dashboard.md).

app.py puts it together; auth.py signs people in; access.py acts for them in the database;
queries.py reads; live.py feeds open pages from one LISTEN; routes.py, actions.py and streams.py
answer requests; pages.py and charts.py render them."""
