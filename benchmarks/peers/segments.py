"""The segment benchmark: `segment_size` of a 3-condition and a 6-condition nested definition,
over Flight SQL (ADBC), p50/p99 of N runs each, next to the same segments as hand-written SQL in
DuckDB on the same data in the same run: the profiles, and the events already stitched to
customers (their export is not timed).

Data: `tributary generate --history-days 730` (identify events carry traits: city, tier,
birthday, consent...), imported with identities; profiles refreshed once (traits, value models).

Also: the time of `CREATE SEGMENT` and `REFRESH SEGMENT` of the 3-condition segment, and the
enter latency of a realtime segment — from an event POSTed to the HTTP collection API to the
customer's row in `segment_members` (p50/p99 of 20 new customers).

Run it with benchmarks/run.sh segments [--customers N] [--runs N] (see docs/benchmarks.md)."""

import json
import statistics
import time
import urllib.request

import duckdb
from adbc_driver_flightsql import dbapi
from tributary_server import history_benchmark

AS_OF = "2026-04-01T00:00:00Z"

THREE = {"as_of": AS_OF, "all": [
    {"trait": "city", "op": "=", "value": "Shanghai"},
    {"event": "purchase", "measure": "count", "op": ">=", "value": 3, "within_days": 90},
    {"model": "rfm_segment", "op": "in", "value": ["Champions", "Loyal", "Potential Loyalist"]},
]}

SIX = {"as_of": AS_OF, "all": [
    {"trait": "member_tier", "op": "in", "value": ["gold", "platinum"]},
    {"any": [{"trait": "city", "op": "=", "value": "Beijing"},
             {"trait": "age", "op": "between", "value": [25, 40]}]},
    {"not": {"event": "purchase", "op": ">=", "value": 1, "within_days": 30}},
    {"field": "total_revenue", "op": ">", "value": 100},
    {"event": "product_view", "op": ">=", "value": 2, "within_days": 90},
]}

# The same segments in DuckDB SQL over `profiles` and `events` (customer_id, timestamp, event).
DUCKDB_THREE = f"""
WITH b AS (SELECT customer_id, count(*) AS n FROM events
           WHERE event = 'purchase' AND timestamp <= TIMESTAMPTZ '{AS_OF}'
             AND timestamp > TIMESTAMPTZ '{AS_OF}' - INTERVAL 90 DAY GROUP BY customer_id)
SELECT count(*) FROM profiles p LEFT JOIN b USING (customer_id)
WHERE json_extract_string(p.traits, '$.city') = 'Shanghai' AND coalesce(b.n, 0) >= 3
  AND p.rfm_segment IN ('Champions', 'Loyal', 'Potential Loyalist')
"""

DUCKDB_SIX = f"""
WITH b AS (SELECT customer_id,
             count(*) FILTER (WHERE event = 'purchase'
                              AND timestamp > TIMESTAMPTZ '{AS_OF}' - INTERVAL 30 DAY) AS recent,
             count(*) FILTER (WHERE event = 'product_view'
                              AND timestamp > TIMESTAMPTZ '{AS_OF}' - INTERVAL 90 DAY) AS views
           FROM events WHERE timestamp <= TIMESTAMPTZ '{AS_OF}'
             AND event IN ('purchase', 'product_view') GROUP BY customer_id)
SELECT count(*) FROM profiles p LEFT JOIN b USING (customer_id)
WHERE json_extract_string(p.traits, '$.member_tier') IN ('gold', 'platinum')
  AND (json_extract_string(p.traits, '$.city') = 'Beijing'
       OR TRY_CAST(json_extract(p.traits, '$.age') AS DOUBLE) BETWEEN 25 AND 40)
  AND coalesce(b.recent, 0) < 1
  AND p.total_revenue > 100 AND coalesce(b.views, 0) >= 2
"""


def latencies(call, runs):
    times, answer = [], None
    for _ in range(runs):
        start = time.perf_counter()
        answer = call()
        times.append(time.perf_counter() - start)
    times.sort()
    p99 = times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
    return statistics.median(times), p99, answer


def post_track(http, user, event):
    body = json.dumps({"type": "track", "event": event, "userId": user,
                       "messageId": f"bench-{user}"}).encode()
    request = urllib.request.Request(f"http://{http}/v1/track", data=body, headers={
        "Content-Type": "application/json", "Authorization": "Basic YmVuY2g6"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def refresh_times(cur, definition, runs):
    """CREATE SEGMENT once, then REFRESH SEGMENT `runs` times (nobody enters or leaves)."""
    text = json.dumps(definition).replace("'", "''")
    start = time.perf_counter()
    cur.execute(f"CREATE SEGMENT bench_refresh AS '{text}'")
    cur.fetchall()
    created = time.perf_counter() - start

    def refresh():
        cur.execute("REFRESH SEGMENT bench_refresh")
        return cur.fetchall()[0][0]

    p50, p99, _ = latencies(refresh, runs)
    return created, p50, p99


def realtime_latencies(cur, http, customers):
    """Enter latency of a realtime segment: POST an event for a new customer, then poll
    segment_members (every 10 ms) until the customer is a member."""
    cur.execute("""CREATE SEGMENT bench_live SCHEDULE 'realtime' AS
                   '{"event": "bench_ping", "op": ">=", "value": 1}'""")
    cur.fetchall()
    times = []
    for i in range(customers):
        start = time.perf_counter()
        post_track(http, f"bench-live-{i}", "bench_ping")
        while True:
            cur.execute("SELECT count(*) FROM segment_members WHERE segment = 'bench_live' "
                        "AND exited_at IS NULL")
            if cur.fetchall()[0][0] == i + 1:
                break
            time.sleep(0.01)
        times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]


def main():
    args, process, addresses = history_benchmark(__doc__, 50, "tributary-segments-")
    try:
        conn = dbapi.connect(f"grpc://{addresses['flight']}", autocommit=True)
        cur = conn.cursor()
        start = time.perf_counter()
        cur.execute("CALL refresh_profiles()")
        cur.fetchall()
        print(f"profiles refreshed (traits and value models) in {time.perf_counter() - start:.1f} s")

        # DuckDB gets the profiles and the stitched events (not timed).
        cur.execute("SELECT customer_id, traits, total_revenue, rfm_segment FROM profiles")
        profiles = cur.fetch_arrow_table()
        cur.execute("""
            SELECT coalesce(u.customer_id, a.customer_id) AS customer_id, e.timestamp, e.event
            FROM events e
            LEFT JOIN identity_map u ON u.id_type = 'user_id' AND u.id_value = e.user_id
            LEFT JOIN identity_map a ON a.id_type = 'anonymous_id' AND a.id_value = e.anonymous_id
            WHERE e.event IN ('purchase', 'product_view')""")
        events = cur.fetch_arrow_table()
        duck = duckdb.connect()
        duck.execute("SET TimeZone = 'UTC'")
        duck.register("profiles_arrow", profiles)
        duck.register("events_arrow", events)
        duck.execute("CREATE TABLE profiles AS SELECT * FROM profiles_arrow")
        duck.execute("CREATE TABLE events AS SELECT * FROM events_arrow")

        def ours(definition):
            text = json.dumps(definition).replace("'", "''")
            cur.execute(f"SELECT segment_size('{text}') AS n")
            return cur.fetch_arrow_table().column(0)[0].as_py()

        # The first count after a start reads the committed events into memory
        # (`customer_events`), as DuckDB's tables above were loaded: timed apart, not a run.
        start = time.perf_counter()
        ours(THREE)
        first = time.perf_counter() - start
        print(f"{args.customers} generated customers, {profiles.num_rows} profiles, "
              f"{events.num_rows} purchase and product_view events; {args.runs} runs each "
              f"(after one untimed call each; the first count after the start took "
              f"{first * 1000:.0f} ms)")
        print(f"{'segment_size':28} {'p50':>9} {'p99':>9} {'DuckDB p50':>11} {'p99':>9} "
              f"{'ratio p50':>9}  size")
        for name, definition, peer_sql in [("3 conditions", THREE, DUCKDB_THREE),
                                           ("6 conditions, nested", SIX, DUCKDB_SIX)]:
            ours(definition)
            duck.execute(peer_sql).fetchone()
            p50, p99, size = latencies(lambda: ours(definition), args.runs)
            d50, d99, d_size = latencies(lambda: duck.execute(peer_sql).fetchone()[0], args.runs)
            print(f"{name:28} {p50 * 1000:7.1f}ms {p99 * 1000:7.1f}ms {d50 * 1000:9.1f}ms "
                  f"{d99 * 1000:7.1f}ms {p50 / d50:8.2f}x  {size}/{d_size}")
            if size != d_size:
                print(f"  the sizes differ: {size} (Tributary) vs {d_size} (DuckDB)")
        created, r50, r99 = refresh_times(cur, THREE, 5)
        print(f"stored 3-condition segment: CREATE SEGMENT {created * 1000:.0f} ms, "
              f"REFRESH SEGMENT p50 {r50 * 1000:.0f} ms, p99 {r99 * 1000:.0f} ms (5 runs)")
        e50, e99 = realtime_latencies(cur, addresses["http"], 20)
        print(f"realtime segment enter latency (event POSTed -> member): p50 {e50 * 1000:.0f} ms, "
              f"p99 {e99 * 1000:.0f} ms (20 customers)")
        cur.close()
        conn.close()
    finally:
        process.terminate()
        process.wait(timeout=60)


if __name__ == "__main__":
    main()
