#!/usr/bin/env python3
"""AWS-side helpers for `make demo`, against the local emulator.

setup:  create the Kinesis stream and the metadata bucket, upload the CSV;
        the alarm topic, the notification topic, an SQS queue on each (the
        first stands in for the aggregator Lambda's subscription, the second
        for a person's inbox) and the stack's two per-application alarms
        (a source application flooding; unknown sources).
table:  read the metrics back from CloudWatch and print the per-window table
        of requests by source application (with the owner's contact).
alarm:  moto stores alarm states but evaluates no alarm and publishes no
        alarm action: set the alarm's state (SetAlarmState), publish the
        state change to the alarm topic in CloudWatch's JSON format, and
        write what the alarm topic delivered (the SNS message) to --out.
        --which app (default) or unknown.
inbox:  print the notifications that reached the person's inbox.
"""
import argparse
import csv
import datetime as dt
import json
import sys
import time

import boto3


def clients(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1")
    return (boto3.client("kinesis", **kw), boto3.client("s3", **kw),
            boto3.client("cloudwatch", **kw))


def messaging(endpoint):
    kw = dict(endpoint_url=endpoint, region_name="us-east-1")
    return boto3.client("sns", **kw), boto3.client("sqs", **kw)


ALARM = "tailrace-demo-source-application-requests"
UNKNOWN_ALARM = "tailrace-demo-unknown-sources"


def queue_on(sns, sqs, topic_arn, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=arn)
    return url


def setup_alarms(args, cw):
    sns, sqs = messaging(args.endpoint)
    alarms = sns.create_topic(Name="tailrace-alarms")["TopicArn"]
    notes = sns.create_topic(Name="tailrace-notifications")["TopicArn"]
    queue_on(sns, sqs, alarms, "alarm-events")
    queue_on(sns, sqs, notes, "inbox")
    # The stack's per-application alarm (packaging/cloudformation/tailrace.yaml).
    cw.put_metric_alarm(
        AlarmName=ALARM,
        AlarmDescription="A source application sent more than %d requests in one "
                         "5-minute window." % args.threshold,
        Metrics=[{"Id": "perapp", "Label": "Requests per source application", "Period": 300,
                  "ReturnData": True,
                  "Expression": "SELECT SUM(Requests) FROM SCHEMA(\"%s\", SourceApplication) "
                                "WHERE SourceApplication != 'unknown' GROUP BY SourceApplication "
                                "ORDER BY SUM() DESC" % args.namespace}],
        EvaluationPeriods=6, DatapointsToAlarm=1, Threshold=args.threshold,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
        AlarmActions=[alarms], OKActions=[alarms])
    # The stack's unknown-sources alarm.
    cw.put_metric_alarm(
        AlarmName=UNKNOWN_ALARM,
        AlarmDescription="Requests from client addresses in no row of the metadata file "
                         "exceeded %d in 5 minutes." % args.unknown_threshold,
        Namespace=args.namespace, MetricName="Requests",
        Dimensions=[{"Name": "SourceApplication", "Value": "unknown"}],
        Statistic="Sum", Period=300,
        EvaluationPeriods=6, DatapointsToAlarm=1, Threshold=args.unknown_threshold,
        ComparisonOperator="GreaterThanThreshold", TreatMissingData="notBreaching",
        AlarmActions=[alarms], OKActions=[alarms])


def alarm(args):
    _, _, cw = clients(args.endpoint)
    sns, sqs = messaging(args.endpoint)
    name, threshold = ((ALARM, args.threshold) if args.which == "app"
                       else (UNKNOWN_ALARM, args.unknown_threshold))
    reason = ("Threshold Crossed: 1 out of the last 6 datapoints was greater "
              "than the threshold (%s)" % float(threshold))
    cw.set_alarm_state(AlarmName=name, StateValue="ALARM", StateReason=reason)
    a = cw.describe_alarms(AlarmNames=[name])["MetricAlarms"][0]
    when = a["StateUpdatedTimestamp"].astimezone(dt.timezone.utc)
    trigger = {"Period": 300, "EvaluationPeriods": a["EvaluationPeriods"],
               "DatapointsToAlarm": a.get("DatapointsToAlarm"),
               "ComparisonOperator": a["ComparisonOperator"], "Threshold": a["Threshold"],
               "TreatMissingData": a.get("TreatMissingData"),
               "EvaluateLowSampleCountPercentile": ""}
    if a.get("Metrics"):
        trigger["Metrics"] = a["Metrics"]
    else:
        trigger.update({"MetricName": a["MetricName"], "Namespace": a["Namespace"],
                        "StatisticType": "Statistic", "Statistic": a["Statistic"].upper(),
                        "Unit": None,
                        "Dimensions": [{"value": d["Value"], "name": d["Name"]}
                                       for d in a["Dimensions"]]})
    # The JSON CloudWatch publishes for an alarm state change.
    message = {
        "AlarmName": a["AlarmName"], "AlarmDescription": a.get("AlarmDescription"),
        "AWSAccountId": a["AlarmArn"].split(":")[4], "AlarmConfigurationUpdatedTimestamp":
            a["AlarmConfigurationUpdatedTimestamp"].strftime("%Y-%m-%dT%H:%M:%S.000+0000"),
        "NewStateValue": a["StateValue"], "NewStateReason": a["StateReason"],
        "StateChangeTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000",
        "Region": "US East (N. Virginia)", "AlarmArn": a["AlarmArn"], "OldStateValue": "OK",
        "OKActions": a["OKActions"], "AlarmActions": a["AlarmActions"],
        "InsufficientDataActions": [], "Trigger": trigger,
    }
    sns.publish(TopicArn=a["AlarmActions"][0], Message=json.dumps(message),
                Subject='ALARM: "%s" in US East (N. Virginia)' % name)
    url = sqs.get_queue_url(QueueName="alarm-events")["QueueUrl"]
    for _ in range(20):
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", [])
        if got:
            with open(args.out, "w") as f:
                f.write(got[0]["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=got[0]["ReceiptHandle"])
            print("alarm %s is ALARM; the alarm topic delivered its state change" % name)
            return
    print("the alarm topic delivered nothing", file=sys.stderr)
    sys.exit(1)


def inbox(args):
    sns, sqs = messaging(args.endpoint)
    url = sqs.get_queue_url(QueueName="inbox")["QueueUrl"]
    seen = 0
    for _ in range(10):
        got = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1,
                                  MaxNumberOfMessages=10).get("Messages", [])
        if not got and seen:
            break
        for m in got:
            env = json.loads(m["Body"])
            print("Subject: %s\n" % env.get("Subject", ""))
            print(env["Message"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            seen += 1
    if not seen:
        print("no notification reached the inbox", file=sys.stderr)
        sys.exit(1)


def setup(args):
    kinesis, s3, _ = clients(args.endpoint)
    kinesis.create_stream(StreamName=args.stream, ShardCount=1)
    for _ in range(100):
        desc = kinesis.describe_stream_summary(StreamName=args.stream)
        if desc["StreamDescriptionSummary"]["StreamStatus"] == "ACTIVE":
            break
        time.sleep(0.1)
    s3.create_bucket(Bucket=args.bucket)
    # The aggregator's client tallies (TAILRACE_TALLIES) live in a bucket of
    # their own in the stack; one bucket is enough here.
    with open(args.metadata, "rb") as f:
        s3.put_object(Bucket=args.bucket, Key="metadata.csv", Body=f.read())
    setup_alarms(args, clients(args.endpoint)[2])


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
    p.add_argument("command", choices=["setup", "table", "alarm", "inbox"])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--stream", default="tailrace-demo")
    p.add_argument("--bucket", default="tailrace-metadata")
    p.add_argument("--metadata")
    p.add_argument("--namespace", default="Tailrace")
    p.add_argument("--threshold", type=int, default=100,
                   help="the per-application alarm's threshold (requests per 5 minutes)")
    p.add_argument("--unknown-threshold", type=int, default=20,
                   help="the unknown-sources alarm's threshold (requests per 5 minutes)")
    p.add_argument("--which", choices=["app", "unknown"], default="app",
                   help="alarm: which alarm fires")
    p.add_argument("--out", help="alarm: where to write the SNS message")
    args = p.parse_args()
    if args.command in ("setup", "table") and not args.metadata:
        p.error("--metadata is required for %s" % args.command)
    if args.command == "alarm" and not args.out:
        p.error("--out is required for alarm")
    {"setup": setup, "table": table, "alarm": alarm, "inbox": inbox}[args.command](args)


if __name__ == "__main__":
    main()
