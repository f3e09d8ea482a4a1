#!/usr/bin/env python3
"""The cost model of docs/COST.md: prints its tables.

Usage: python3 bench/cost.py [--clients C] [--lines-per-sec L] [--services S]
                             [--apps-per-service K] [--model default|pairs|apps]
                             [--flows F] [--no-stall-alarm] [--host-all-metrics]

Every input is one of three kinds, and the tables say which:
  PRICE     a list price (page and date in PRICES below; re-check them: they change)
  MEASURED  measured in this repository (the command is given next to it)
  ASSUMED   a fleet property you should replace with your own
"""
import argparse
import math

# ---------------------------------------------------------------- PRICES
# AWS public price pages, region us-east-1, as known when this file was
# written (2026-12-01); they were NOT fetched from this machine (no access to
# aws.amazon.com here): check them before quoting a bill.
PRICES = {
    # aws.amazon.com/kinesis/data-streams/pricing/
    "kds_shard_hour": 0.015,            # provisioned, per shard-hour
    "kds_put_unit_per_million": 0.014,  # provisioned, per 1M PUT payload units (25 KB each)
    "kds_od_stream_hour": 0.04,         # on-demand, per stream-hour
    "kds_od_gb_in": 0.08,               # on-demand, per GB written (records rounded up to 1 KB)
    "kds_od_gb_out": 0.04,              # on-demand, per GB read (per consumer)
    # aws.amazon.com/lambda/pricing/ (arm64)
    "lambda_gb_second": 0.0000133334,
    "lambda_per_million_requests": 0.20,
    # aws.amazon.com/cloudwatch/pricing/
    "cw_metric_tiers": [(10_000, 0.30), (240_000, 0.10), (750_000, 0.05), (math.inf, 0.02)],
    "cw_per_1000_requests": 0.01,       # PutMetricData
    "cw_alarm_standard": 0.10,          # per alarm metric per month; a Metrics Insights
                                        # alarm is billed per metric its query analyzes
    "cw_dashboard": 3.00,               # per dashboard per month (3 free)
    "cw_logs_gb": 0.50,                 # Logs ingestion per GB
    # aws.amazon.com/s3/pricing/ (S3 Standard)
    "s3_put_per_1000": 0.005,
    "s3_get_per_1000": 0.0004,
    "s3_gb_month": 0.023,
    # aws.amazon.com/dynamodb/pricing/on-demand/
    "ddb_per_million_wru": 0.625,
    # aws.amazon.com/kinesis/data-analytics/pricing/ (Kinesis Analytics SQL)
    "kda_kpu_hour": 0.11,
}
HOURS_PER_MONTH = 730
WINDOWS_PER_MONTH = 30 * 24 * 12  # 5-minute windows

# ---------------------------------------------------------------- MEASURED
MEASURED = {
    # BENCHMARKS.md "On the stream": ~480 KB per window for ~5,000 client
    # groups = ~96 bytes per client group in a partial (bench/run.sh).
    "bytes_per_client_group": 96,
    "bytes_per_partial_header": 200,
    # BENCHMARKS.md "End to end": 469.9 MB for 2,000,000 combined+%D lines.
    "raw_bytes_per_line": 235,
    # BENCHMARKS.md "Aggregator": merge + datums of 200 partials holding
    # 70,642 client groups: 87.3 ms, i.e. ~1.24 us per client group
    # (cargo bench -p tailrace-aggregator --bench handler).
    "lambda_us_per_client_group": 1.24,
    # BENCHMARKS.md "Cold start": 6.7 ms to the first `next`.
    "lambda_init_ms": 6.7,
}

# ---------------------------------------------------------------- THE STACK
# packaging/cloudformation/tailrace.yaml, counted: alarms on one metric each
# (unknown sources, agents silent, aggregator errors, iterator age, batches
# given up, notifications not sent, metadata stale, poison records, dropped
# datums, and the inventory's when it is deployed) ...
STANDARD_ALARMS = 10
# ... and the two Metrics Insights alarms, billed per metric they analyze:
# source-application-requests (Requests per SourceApplication: A metrics)
# and agent-stalled (OldestUnacknowledgedAge per Host and Flow: H·F metrics).
AGENT_METRICS = 17               # agent/src/observe/metric_set.rs METRICS, per flow
AGENT_PER_HOST_METRICS = 1       # metric_set::PER_HOST: what agent-stalled reads
DDB_WRITES_PER_PARTIAL = 2       # the claim and the finish (aggregator-lambda/src/idempotency.rs)
# Client tallies (aggregator-lambda/src/tally/): one S3 object per batch,
# window and application, an entry per (partial, application) listing at
# most 100 clients.
TALLY_TOP_PER_ENTRY = 100        # tally::TOP_PER_ENTRY
TALLY_RETENTION_DAYS = 15        # the TalliesBucket lifecycle rule
TALLY_ENTRY_BYTES = 270          # JSON of an entry without clients: instance-id host, 20-digit hashes (computed from the format)
TALLY_CLIENT_BYTES = 22          # one ["10.4.123.210",1500] pair and its comma

# ---------------------------------------------------------------- ASSUMED
LAMBDA_MEMORY_GB = 0.25          # the template's MemorySize: 256
PUT_METRIC_DATA_MS = 40          # one PutMetricData round trip inside AWS (assumed)
LOG_BYTES_PER_INVOCATION = 2_000 # the handler's summary and per-window lines (assumed)
NOTIFICATIONS_PER_MONTH = 100    # alarm state changes about applications (assumed)
TALLY_PERIODS_LISTED = 8         # a notification lists EvaluationPeriods + 2 periods of tallies ...
TALLY_PERIODS_READ = 2           # ... and reads one application's objects of one or two of them


def cw_metric_cost(n):
    cost, left = 0.0, n
    for size, price in PRICES["cw_metric_tiers"]:
        take = min(left, size)
        cost += take * price
        left -= take
        if left <= 0:
            break
    return cost


def model_metrics(model, apps, services, pairs, metrics=5):
    """Custom metrics (distinct name + dimension values) of a model."""
    sets = {
        "default": pairs + (apps + 1),   # [Service, SourceApplication] + [SourceApplication]
        "pairs": pairs,                  # [Service, SourceApplication] only
        "apps": apps + 1,                # [SourceApplication] only
    }[model]
    return metrics * sets


def fleet(hosts, apps, a):
    services = a.services
    pairs = min(services, a.apps_per_service) * apps + services  # + unknown per service
    pairs = min(pairs, services * (apps + 1))
    host_flows = hosts * a.flows
    # Kinesis, aggregate mode: one partial per host, flow and window.
    partial_bytes = MEASURED["bytes_per_partial_header"] + MEASURED["bytes_per_client_group"] * a.clients
    records_s = host_flows / 300
    bytes_s = host_flows * partial_bytes / 300
    shards = max(1, math.ceil(bytes_s / 1e6), math.ceil(records_s / 1000))
    put_units = host_flows * WINDOWS_PER_MONTH * math.ceil(partial_bytes / 25_000)
    kds_prov = shards * HOURS_PER_MONTH * PRICES["kds_shard_hour"] + put_units / 1e6 * PRICES["kds_put_unit_per_million"]
    gb = host_flows * WINDOWS_PER_MONTH * math.ceil(partial_bytes / 1024) * 1024 / 1e9
    kds_od = HOURS_PER_MONTH * PRICES["kds_od_stream_hour"] + gb * (PRICES["kds_od_gb_in"] + PRICES["kds_od_gb_out"])
    # Lambda: batches of up to 200 per shard per window.
    batches = max(1, math.ceil(host_flows / 200))
    datums_per_batch = 5 * (pairs + apps + 1)
    calls_per_batch = math.ceil(datums_per_batch / 1000)
    groups = host_flows * a.clients
    ms_window = groups * MEASURED["lambda_us_per_client_group"] / 1000 + batches * calls_per_batch * PUT_METRIC_DATA_MS
    invocations = batches * WINDOWS_PER_MONTH
    lam = (ms_window / 1000 * WINDOWS_PER_MONTH * LAMBDA_MEMORY_GB * PRICES["lambda_gb_second"]
           + invocations / 1e6 * PRICES["lambda_per_million_requests"])
    # CloudWatch. Custom metrics are billed per account, so the aggregator's
    # and the agents' share one tiered count. The agents send their 17
    # metrics per Flow (one series for the fleet) and, for the per-host stall
    # alarm (host_dimension), OldestUnacknowledgedAge per Host and Flow.
    metrics = model_metrics(a.model, apps, services, pairs)
    per_host = AGENT_METRICS if a.host_all_metrics else AGENT_PER_HOST_METRICS
    agent_metrics = AGENT_METRICS * a.flows + (per_host * host_flows if a.stall_alarm else 0)
    cw_metrics = cw_metric_cost(metrics + agent_metrics)
    cw_calls = batches * calls_per_batch * WINDOWS_PER_MONTH / 1000 * PRICES["cw_per_1000_requests"]
    insights_metrics = apps + (host_flows if a.stall_alarm else 0)
    alarms = (STANDARD_ALARMS + insights_metrics) * PRICES["cw_alarm_standard"]
    cw_other = PRICES["cw_dashboard"] + invocations * LOG_BYTES_PER_INVOCATION / 1e9 * PRICES["cw_logs_gb"]
    # DynamoDB claims: two writes per partial (one partial per host, flow
    # and window unless it is larger than a record or has late lines).
    ddb = DDB_WRITES_PER_PARTIAL * host_flows * WINDOWS_PER_MONTH / 1e6 * PRICES["ddb_per_million_wru"]
    # Client tallies in S3: a PUT per batch, window and application (every
    # batch of 200 partials is taken to hold every application), stored 15
    # days; a notification LISTs its range (1,000 names a page) and GETs one
    # application's objects.
    entries = host_flows * min(a.apps_per_host, apps + 1)
    clients_per_entry = min(TALLY_TOP_PER_ENTRY, max(1, a.clients // max(1, min(a.apps_per_host, apps + 1))))
    tally_bytes_window = entries * (TALLY_ENTRY_BYTES + TALLY_CLIENT_BYTES * clients_per_entry)
    tally_objects_window = batches * (apps + 1)
    tally_puts = tally_objects_window * WINDOWS_PER_MONTH
    tally_lists = NOTIFICATIONS_PER_MONTH * math.ceil(TALLY_PERIODS_LISTED * tally_objects_window / 1000)
    tally_gets = NOTIFICATIONS_PER_MONTH * TALLY_PERIODS_READ * batches
    tallies = ((tally_puts + tally_lists) / 1000 * PRICES["s3_put_per_1000"]
               + tally_gets / 1000 * PRICES["s3_get_per_1000"]
               + tally_bytes_window * 12 * 24 * TALLY_RETENTION_DAYS / 1e9 * PRICES["s3_gb_month"])
    # The rejected alternative: the same entries as DynamoDB items (one
    # write request unit per started KB), found by a window index.
    tally_ddb = (entries * WINDOWS_PER_MONTH
                 * math.ceil((TALLY_ENTRY_BYTES + TALLY_CLIENT_BYTES * clients_per_entry) / 1024)
                 / 1e6 * PRICES["ddb_per_million_wru"])
    ours = kds_prov + lam + cw_metrics + cw_calls + alarms + cw_other + ddb + tallies
    # The replaced pipeline: every line a Kinesis record, Kinesis Analytics SQL.
    raw_records_s = hosts * a.lines_per_sec
    raw_bytes_s = raw_records_s * MEASURED["raw_bytes_per_line"]
    raw_shards = max(1, math.ceil(raw_bytes_s / 1e6), math.ceil(raw_records_s / 1000))
    raw_units = raw_records_s * 3600 * HOURS_PER_MONTH  # each line < 25 KB: one unit
    raw_kds = raw_shards * HOURS_PER_MONTH * PRICES["kds_shard_hour"] + raw_units / 1e6 * PRICES["kds_put_unit_per_million"]
    kpus = max(1, math.ceil(raw_bytes_s / 1e6))  # ASSUMED: 1 KPU per MB/s of input
    kda = kpus * HOURS_PER_MONTH * PRICES["kda_kpu_hour"]
    # The replaced pipeline publishes the same application metrics, has the
    # standard alarms and no agent self-metrics, Insights alarms or claims.
    old_cw = cw_metric_cost(metrics) + (STANDARD_ALARMS + apps) * PRICES["cw_alarm_standard"]
    old = raw_kds + kda + lam + old_cw + cw_calls + cw_other
    return dict(hosts=hosts, apps=apps, shards=shards, kds_prov=kds_prov, kds_od=kds_od, lam=lam,
                ms_window=ms_window, metrics=metrics, agent_metrics=agent_metrics, cw_metrics=cw_metrics,
                cw_calls=cw_calls, insights_metrics=insights_metrics, alarms=alarms, cw_other=cw_other,
                ddb=ddb, tallies=tallies, tally_ddb=tally_ddb, tally_puts=tally_puts,
                tally_mb_window=tally_bytes_window / 1e6,
                tally_app_mb=tally_bytes_window / min(a.apps_per_host, apps + 1) / 1e6, ours=ours, raw_shards=raw_shards, raw_kds=raw_kds, kpus=kpus,
                kda=kda, old=old, partial_bytes=partial_bytes)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--clients", type=int, default=300, help="ASSUMED distinct clients per host and window")
    p.add_argument("--lines-per-sec", type=float, default=50, help="ASSUMED access-log lines per second per host")
    p.add_argument("--services", type=int, default=5, help="ASSUMED services (Service dimension values)")
    p.add_argument("--apps-per-service", type=int, default=2, help="ASSUMED services each application calls")
    p.add_argument("--model", default="default", choices=["default", "pairs", "apps"])
    p.add_argument("--flows", type=int, default=1, help="ASSUMED flows per host")
    p.add_argument("--apps-per-host", type=int, default=10,
                   help="ASSUMED source applications among one host's clients in a window")
    p.add_argument("--no-stall-alarm", dest="stall_alarm", action="store_false",
                   help="agents without host_dimension: no per-host metric, the agent-stalled alarm names no host")
    p.add_argument("--host-all-metrics", action="store_true",
                   help="price the agents as before #22: all 17 self-metrics per host with host_dimension")
    a = p.parse_args()
    print(f"assumed: {a.clients} clients per host-window, {a.lines_per_sec:g} lines/s per host, {a.flows} flow(s), "
          f"{a.services} services, each application calls {a.apps_per_service}; model {a.model}; "
          f"Lambda {LAMBDA_MEMORY_GB*1024:.0f} MB, PutMetricData {PUT_METRIC_DATA_MS} ms; per-host stall alarm "
          f"{'on' if a.stall_alarm else 'off'}{' (all 17 agent metrics per host)' if a.host_all_metrics else ''}")
    print()
    print("| hosts | apps | shards | Kinesis prov. $ | Lambda $ | app metrics | agent metrics | CW metrics $ "
          "| PutMetricData $ | alarm metrics | alarms $ | dash+logs $ | DynamoDB $ | tallies $ "
          "| **tailrace $/month** | raw shards | KDA $ | **replaced $/month** |")
    print("|" + "---:|" * 18)
    for hosts in (10, 100, 1_000, 10_000):
        for apps in (5, 20, 100):
            r = fleet(hosts, apps, a)
            print(f"| {hosts:,} | {apps} | {r['shards']} | {r['kds_prov']:,.2f} | {r['lam']:,.2f} | {r['metrics']:,} "
                  f"| {r['agent_metrics']:,} | {r['cw_metrics']:,.2f} | {r['cw_calls']:,.2f} "
                  f"| {STANDARD_ALARMS + r['insights_metrics']:,} | {r['alarms']:,.2f} | {r['cw_other']:,.2f} "
                  f"| {r['ddb']:,.2f} | {r['tallies']:,.2f} | **{r['ours']:,.2f}** | {r['raw_shards']:,} | {r['kda']:,.2f} | **{r['old']:,.2f}** |")
    tallies_table(a)


def tallies_table(a):
    """The client tallies' share at each fleet size, and the DynamoDB
    alternative's (docs/COST.md, "Top addresses")."""
    print()
    print("| hosts | apps | tally PUTs/month | MB per window | MB one message reads | S3 tallies $/month "
          "| as DynamoDB items $/month |")
    print("|" + "---:|" * 7)
    for hosts in (10, 100, 1_000, 10_000):
        r = fleet(hosts, 20, a)
        print(f"| {hosts:,} | 20 | {r['tally_puts']:,} | {r['tally_mb_window']:,.1f} | {r['tally_app_mb']:,.1f} "
              f"| {r['tallies']:,.2f} "
              f"| {r['tally_ddb']:,.2f} |")


if __name__ == "__main__":
    main()
