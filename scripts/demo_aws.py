#!/usr/bin/env python3
"""AWS-side helpers for `make demo`, against the local emulator.

setup:  create the Kinesis stream and the metadata bucket, upload the CSV.
table:  read the metrics back from CloudWatch and print the per-window table
        of requests by source application (with the owner's contact).
"""
import argparse
import csv
import datetime as dt
import sys
import time

import boto3


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1")
    return (boto3.client("kinesis", **kw), boto3.client("s3", **kw),
            boto3.client("cloudwatch", **kw))


def setup(args):
    kinesis, s3, _ = clients(args.endpoint)
    kinesis.create_stream(StreamName=args.stream, ShardCount=1)
    for _ in range(100):
        desc = kinesis.describe_stream_summary(StreamName=args.stream)
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    s3.create_bucket(Bucket=args.bucket)
    with open(args.metadata, "rb") as f:
        s3.put_object(Bucket=args.bucket, Key="metadata.csv", Body=f.read())


def contacts(path):
    out = {}
    with open(path, newline="") as f:
        rows = [r for r in f if not r.lstrip().startswith("#")]
    for row in csv.DictReader(rows):
        out.setdefault(row["application"], row["contact"])
    return out


def table(args):
    _, _, cw = clients(args.endpoint)
    # Query the [Service, SourceApplication] metrics: moto matches a
    # dimension filter against any superset, so [SourceApplication] alone
    # would also sum the per-service datums (real CloudWatch matches exactly).
    pairs = set()
    paginator = cw.get_paginator("list_metrics")
    for page in paginator.paginate(Namespace=args.namespace, MetricName="Requests"):
        for m in page["Metrics"]:
            dims = {d["Name"]: d["Value"] for d in m["Dimensions"]}
            if set(dims) == {"Service", "SourceApplication"}:
                pairs.add((dims["Service"], dims["SourceApplication"]))
    if not pairs:
        print("no metrics in CloudWatch namespace %s" % args.namespace, file=sys.stderr)
        sys.exit(1)
    now = dt.datetime.now(dt.timezone.utc)
    start, end = now - dt.timedelta(hours=3), now + dt.timedelta(minutes=10)

    def stat(metric, pair, statistic):
        r = cw.get_metric_statistics(
            Namespace=args.namespace, MetricName=metric,
            Dimensions=[{"Name": "Service", "Value": pair[0]},
                        {"Name": "SourceApplication", "Value": pair[1]}],
            StartTime=start, EndTime=end, Period=300, Statistics=[statistic])
        return {p["Timestamp"]: p[statistic] for p in r["Datapoints"]}

    who = contacts(args.metadata)
    rows = []
    for pair in sorted(pairs):
        req = stat("Requests", pair, "Sum")
        byt = stat("Bytes", pair, "Sum")
        c4 = stat("ClientErrors", pair, "Sum")
        c5 = stat("ServerErrors", pair, "Sum")
        lat_sum = stat("Latency", pair, "Sum")
        lat_n = stat("Latency", pair, "SampleCount")
        for ts in sorted(req):
            n = lat_n.get(ts, 0)
            avg = (lat_sum.get(ts, 0) / n / 1000) if n else None
            rows.append((ts, pair[0], pair[1], int(req[ts]), int(byt.get(ts, 0)),
                         int(c4.get(ts, 0)), int(c5.get(ts, 0)), avg, who.get(pair[1], "-")))
    rows.sort()
    head = ("window (UTC)", "service", "source application", "requests", "bytes", "4xx",
            "5xx", "avg latency", "contact")
    fmt = "%-17s %-14s %-19s %8s %9s %4s %4s %11s  %s"
    print(fmt % head)
    print("-" * 116)
    for ts, svc, app, r, b, e4, e5, avg, contact in rows:
        lat = "%.2f ms" % avg if avg is not None else "-"
        print(fmt % (ts.strftime("%Y-%m-%d %H:%M"), svc, app, r, b, e4, e5, lat, contact))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["setup", "table"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stream", default="tailrace-demo")
    p.add_argument("--bucket", default="tailrace-metadata")
    p.add_argument("--metadata", required=True)
    p.add_argument("--namespace", default="Tailrace")
    args = p.parse_args()
    {"setup": setup, "table": table}[args.command](args)


if __name__ == "__main__":
    main()
