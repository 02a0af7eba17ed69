"""Helpers for the collection tests: posting to the HTTP API and reading back through ADBC."""

import base64
import gzip as gzip_module
import json
import urllib.error
import urllib.request


def post(base_url, path, body, key=None, gzip=False, raw=None, headers=None, timeout=30):
    """POSTs JSON (or `raw` bytes); returns (status, parsed JSON answer, response headers, whose
    names are case-insensitive)."""
    data = raw if raw is not None else json.dumps(body).encode()
    request_headers = {"Content-Type": "application/json", **(headers or {})}
    if gzip:
        data = gzip_module.compress(data)
        request_headers["Content-Encoding"] = "gzip"
    if key is not None:
        token = base64.b64encode(f"{key}:".encode()).decode()
        request_headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(base_url + path, data=data, headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null"), response.headers
    except urllib.error.HTTPError as error:
        text = error.read()
        try:
            answer = json.loads(text)
        except ValueError:
            answer = text.decode(errors="replace")
        return error.code, answer, error.headers


def track(message_id, user="u", event="Viewed", **extra):
    return {"type": "track", "event": event, "userId": user, "messageId": message_id, **extra}


def query(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def count(conn, table="events", where="true"):
    return query(conn, f"SELECT count(*) FROM {table} WHERE {where}")[0][0]
