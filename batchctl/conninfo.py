"""Helpers for libpq connection strings: a URI (``postgresql://user@host/db``) or ``key=value``
pairs. They parse them with libpq itself (via psycopg) rather than by hand, so both forms and
every libpq parameter work."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlencode

from psycopg.conninfo import conninfo_to_dict, make_conninfo


def conninfo_params(url: str) -> dict[str, str]:
    """The libpq parameters of ``url`` (URI or key=value), as strings."""
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def is_uri(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def to_uri(params: Mapping[str, str], scheme: str = "postgresql") -> str:
    """A libpq URI for ``params``.

    A plain host name goes into the authority part; a socket directory (``/tmp/x``) or a
    multi-host list cannot, so it goes into the query string as ``?host=``, which libpq accepts
    for every parameter.
    """
    rest = dict(params)
    dbname = rest.pop("dbname", "")
    netloc = ""
    host = rest.get("host", "")
    if host and "/" not in host and "," not in host:
        rest.pop("host")
        netloc = f"[{host}]" if ":" in host else quote(host, safe="")
        if "port" in rest:
            netloc += ":" + rest.pop("port")
    if "user" in rest:
        userinfo = quote(rest.pop("user"), safe="")
        if "password" in rest:
            userinfo += ":" + quote(rest.pop("password"), safe="")
        netloc = f"{userinfo}@{netloc}"
    # quote, not urlencode's default quote_plus: libpq does not read "+" as a space.
    query = urlencode(rest, quote_via=quote, safe="/")
    return f"{scheme}://{netloc}/{quote(dbname, safe='')}" + (f"?{query}" if query else "")


def with_dbname(url: str, dbname: str) -> str:
    """The same server and credentials, another database; keeps the URI or key=value form."""
    params = conninfo_params(url)
    params["dbname"] = dbname
    return to_uri(params) if is_uri(url) else make_conninfo("", **params)


def database_target(url: str) -> str:
    """The database a URL names, in words for a message (never its password):
    ``database "app" on db.example.com:5432 as app``."""
    params = conninfo_params(url)
    where = params.get("host") or "the local socket"
    if "port" in params:
        where += f":{params['port']}"
    target = f'database "{params.get("dbname", "?")}" on {where}'
    return f"{target} as {params['user']}" if params.get("user") else target
