#!/usr/bin/env python3
"""Checks of tailrace.yaml that neither cfn-lint nor moto_server can make.

moto does not enforce KMS key policies, IAM conditions or alarm evaluation,
and cfn-lint does not know what the stack is for. This script reads the
template (and, where a name must agree with the code, the Rust source) and
fails with one line per broken promise:

- alarms reach a topic CloudWatch can publish to: no topic uses the
  AWS-managed alias/aws/sns key; an encrypted topic uses a customer-managed
  key whose policy grants cloudwatch.amazonaws.com kms:GenerateDataKey* and
  kms:Decrypt;
- every source application is judged on its own (a Metrics Insights alarm
  grouped by SourceApplication, no LIMIT);
- under every metric model the stack accepts (MetricDimensions,
  MetricNames), the per-application and unknown-sources alarms read a
  dimension set and a metric the aggregator publishes: no model blinds them;
- the alarms' evaluation and the lag alarm are the ones the timing rule
  holds for (aggregator-lambda/src/notify/timing.rs);
- the notifier can list a flood's top addresses (client tallies bucket,
  its permissions, TAILRACE_TALLIES) and ask EC2 who holds them;
- the operational alarms exist, on the metric names the code publishes;
- the agents may publish self-metrics, only in their namespace, which is the
  agent's default namespace;
- the notifier is wired: SNS may invoke the aggregator, which may publish to
  the notification topic and read metrics;
- names stay within AWS limits for a 128-character stack name; namespaces
  refuse AWS/...; the stream is retained; a reused code key cannot go
  unnoticed; the dashboard labels every error line with its application;
- failures are kept (#22): stream retries are bounded by record age, not a
  count; every asynchronously invoked function (SNS, EventBridge) has an
  on-failure destination its role may write to, with an alarm on it; the
  inventory updater is one writer at a time; claims outlive CloudWatch's
  14 days; every function's code can be redeployed under the same key;
  versioned buckets expire old versions; the retained, named stream has a
  documented re-create path; every checkov skip gives its reason.

Usage: check_template.py [TEMPLATE] (default: next to this script). Exit 1
on any failure. Run by packaging/check.sh.
"""
import json
import os
import re
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, !If, ...)."""


def _tag(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    name = "Ref" if suffix == "Ref" else "Fn::" + suffix
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {name: value}


CfnLoader.add_multi_constructor("!", _tag)

FAILURES = []


def source(rel):
    """The text of one source file, or of every .rs file under a folder
    (a module that is a folder: publish/, config/), so a check names the
    module, not the file it happens to sit in today."""
    path = os.path.join(ROOT, rel)
    if os.path.isdir(path):
        texts = []
        for d, _, files in sorted(os.walk(path)):
            texts += [open(os.path.join(d, f)).read() for f in sorted(files) if f.endswith(".rs")]
        return "\n".join(texts)
    return open(path).read()


def check(cond, what):
    if not cond:
        FAILURES.append(what)
    return cond


def as_list(x):
    return x if isinstance(x, list) else [x]


def resources(t, rtype):
    return {k: v for k, v in t["Resources"].items() if v["Type"] == rtype}


def ref_name(x):
    """The logical id a value refers to (Ref or GetAtt), else None."""
    if isinstance(x, dict):
        if "Ref" in x:
            return x["Ref"]
        if "Fn::GetAtt" in x:
            return x["Fn::GetAtt"][0]
    return None


def key_of_topic(props):
    """('none' | 'aws-managed' | logical id of a KMS key | 'other', detail)."""
    k = props.get("KmsMasterKeyId")
    if k is None:
        return "none"
    if isinstance(k, str):
        return "aws-managed" if k.startswith("alias/aws/") else "other:" + k
    if "Fn::If" in k:
        _, yes, no = k["Fn::If"]
        if ref_name(no) != "AWS::NoValue":
            return "other:" + json.dumps(k)
        name = ref_name(yes)
        return name if name else "other:" + json.dumps(k)
    name = ref_name(k)
    return name if name else "other:" + json.dumps(k)


def actions_allowed(stmt):
    return {a.lower() for a in as_list(stmt.get("Action", []))}


def grants(stmt, action):
    """Whether an Allow statement's actions cover `action` (IAM wildcards)."""
    if stmt.get("Effect") != "Allow":
        return False
    for a in actions_allowed(stmt):
        pattern = "^" + re.escape(a).replace(r"\*", ".*").replace(r"\?", ".") + "$"
        if re.match(pattern, action.lower()):
            return True
    return False


def check_topics(t):
    keys = resources(t, "AWS::KMS::Key")
    topics = resources(t, "AWS::SNS::Topic")
    check(topics, "no SNS topic")
    text = open(TEMPLATE).read()
    check("alias/aws/sns" not in text, "the template mentions alias/aws/sns: CloudWatch cannot publish to such a topic")
    for name, topic in topics.items():
        key = key_of_topic(topic.get("Properties", {}))
        if key == "none":
            continue
        if not check(key in keys, f"topic {name}: key {key} is not a customer-managed key of this stack"):
            continue
        stmts = as_list(keys[key]["Properties"]["KeyPolicy"]["Statement"])
        cw = [s for s in stmts
              if "cloudwatch.amazonaws.com" in as_list(s.get("Principal", {}).get("Service", []))]
        for action in ("kms:GenerateDataKey", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt"):
            check(any(grants(s, action) for s in cw),
                  f"topic {name}: key {key}'s policy does not grant cloudwatch.amazonaws.com {action}")
    # Every alarm action goes to one of these topics.
    alarms = resources(t, "AWS::CloudWatch::Alarm")
    for name, alarm in alarms.items():
        acts = alarm["Properties"].get("AlarmActions", [])
        check(acts and all(ref_name(a) in topics for a in acts),
              f"alarm {name}: AlarmActions {acts} are not topics of this stack")


def expressions_of(alarm):
    """Every Metrics Insights query of an alarm, both branches of an !If."""
    out = []

    def add(e):
        if isinstance(e, dict) and "Fn::If" in e:
            for branch in e["Fn::If"][1:]:
                add(branch)
            return
        if isinstance(e, dict) and "Fn::Sub" in e:
            e = as_list(e["Fn::Sub"])[0]
        if isinstance(e, str) and e.strip().upper().startswith("SELECT"):
            out.append(" ".join(e.split()))

    metrics = alarm["Properties"].get("Metrics", [])
    if isinstance(metrics, dict) and "Fn::If" in metrics:
        metrics = [m for b in metrics["Fn::If"][1:] if isinstance(b, list) for m in b]
    for m in metrics:
        add(m.get("Expression"))
    return out


def expression_of(alarm):
    """The first Metrics Insights query of an alarm, if any."""
    e = expressions_of(alarm)
    return e[0] if e else None


def resolve(value, conditions):
    """A property value with its !If resolved under `conditions` (name ->
    bool); AWS::NoValue becomes None."""
    if isinstance(value, dict):
        if "Fn::If" in value:
            name, yes, no = value["Fn::If"]
            return resolve(yes if conditions[name] else no, conditions)
        if value.get("Ref") == "AWS::NoValue":
            return None
        return {k: resolve(v, conditions) for k, v in value.items()}
    if isinstance(value, list):
        return [x for x in (resolve(v, conditions) for v in value) if x is not None]
    return value


def dimensions_of(alarm):
    """An alarm's Dimensions, both branches of an !If."""
    d = alarm["Properties"].get("Dimensions", [])
    if isinstance(d, dict) and "Fn::If" in d:
        return [x for b in d["Fn::If"][1:] if isinstance(b, list) for x in b]
    return d if isinstance(d, list) else []


def metrics_of(alarm):
    """(namespace, metric name) pairs an alarm watches, namespaces as given."""
    p = alarm["Properties"]
    out = []
    if "MetricName" in p:
        out.append((p.get("Namespace"), p["MetricName"]))
    for m in p.get("Metrics", []):
        if "MetricStat" in m:
            mm = m["MetricStat"]["Metric"]
            out.append((mm.get("Namespace"), mm["MetricName"]))
    for expr in expressions_of(alarm):
        mt = re.match(r"SELECT \w+\((\w+)\) FROM SCHEMA\(\"\$\{(\w+)\}\"", expr)
        if mt:
            out.append(({"Ref": mt.group(2)}, mt.group(1)))
    return out


def check_alarms(t):
    alarms = resources(t, "AWS::CloudWatch::Alarm")
    watched = [(ns, m) for a in alarms.values() for ns, m in metrics_of(a)]
    ns_ref = {"Ref": "Namespace"}
    publish = source("aggregator-lambda/src/publish")
    health = ["PoisonRecords", "MetadataStale", "DroppedDatums"]
    for metric in health:
        check((ns_ref, metric) in watched, f"no alarm on {metric} in the aggregator's namespace")
        if metric == "DroppedDatums" and f'"{metric}"' not in publish:
            # Published by the "cost" branch; checked once both are merged.
            print(f"note: {metric} is not (yet) a metric name in publish/", file=sys.stderr)
            continue
        check(f'"{metric}"' in publish, f"{metric}: not a metric name in aggregator-lambda/src/publish/")
    check(("AWS/Lambda", "IteratorAge") in watched, "no alarm on the aggregator's IteratorAge")
    check(("AWS/Lambda", "Errors") in watched, "no alarm on the aggregator's Errors")
    sqs = [a for a in alarms.values()
           if ("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics_of(a)
           and any(ref_name(d["Value"]) == "FailedBatches" for d in dimensions_of(a))]
    check(sqs, "no alarm on messages in the failure queue (FailedBatches)")
    agent = [a for a in alarms.values()
             if ({"Ref": "AgentNamespace"}, "OldestUnacknowledgedAge") in metrics_of(a)]
    check(agent, "no per-host alarm on the agents' OldestUnacknowledgedAge")
    for a in agent:
        check("GROUP BY Host" in expression_of(a), "the agent-stalled alarm is not per Host")
    metrics_rs = source("agent/src/observe/metric_set.rs")
    check('"OldestUnacknowledgedAge"' in metrics_rs, "OldestUnacknowledgedAge is not an agent metric (agent/src/observe/metric_set.rs)")

    # Each source application on its own.
    per_app = [(n, e) for n, a in alarms.items() for e in expressions_of(a)
               if "SourceApplication" in e and "GROUP BY" in e]
    check(per_app, "no Metrics Insights alarm over SourceApplication")
    for name, expr in per_app:
        check("GROUP BY SourceApplication" in expr, f"alarm {name}: not grouped by SourceApplication")
        check(" LIMIT " not in f" {expr} ", f"alarm {name}: LIMIT ranks applications instead of judging each")
        check("SUM(" in expr, f"alarm {name}: only SUM is meaningful for a window of several datapoints")
    for name, a in alarms.items():
        stat = a["Properties"].get("Statistic")
        if isinstance(stat, dict) and "Fn::If" in stat:
            stat = stat["Fn::If"][2]
        if ("Requests" in [m for _, m in metrics_of(a)]) and stat:
            check(stat == "Sum", f"alarm {name}: Requests read with {stat}, not Sum")


def condition_value(cond, t, params):
    """Evaluate a template condition for these parameter values."""
    if isinstance(cond, dict) and "Condition" in cond:
        return condition_value(t["Conditions"][cond["Condition"]], t, params)
    if isinstance(cond, dict) and "Fn::Or" in cond:
        return any(condition_value(c, t, params) for c in cond["Fn::Or"])
    if isinstance(cond, dict) and "Fn::And" in cond:
        return all(condition_value(c, t, params) for c in cond["Fn::And"])
    if isinstance(cond, dict) and "Fn::Not" in cond:
        return not condition_value(cond["Fn::Not"][0], t, params)
    if isinstance(cond, dict) and "Fn::Equals" in cond:
        a, b = (params.get(x["Ref"], x) if isinstance(x, dict) and "Ref" in x else x
                for x in cond["Fn::Equals"])
        return str(a) == str(b)
    raise ValueError(f"condition {cond!r}")


def published_sets(model):
    """The dimension sets a TAILRACE_DIMENSIONS value publishes, as sets."""
    return [frozenset(p.strip() for p in part.split("+")) for part in model.split(",")]


def check_models(t):
    """Under every accepted MetricDimensions value, the per-application and
    unknown-sources alarms read a dimension set the aggregator publishes,
    and no accepted MetricNames value leaves out Requests."""
    dims = t["Parameters"]["MetricDimensions"]
    allowed = dims.get("AllowedValues", [])
    check(allowed, "MetricDimensions lists no AllowedValues: a model without SourceApplication would blind the alarms")
    check(dims["Default"] in allowed, "MetricDimensions' default is not an allowed value")
    alarms = t["Resources"]
    for model in allowed:
        sets = published_sets(model)
        check(any("SourceApplication" in s for s in sets), f"MetricDimensions {model!r} has no SourceApplication")
        conditions = {c: condition_value(v, t, {"MetricDimensions": model})
                      for c, v in t["Conditions"].items()
                      if "MetricDimensions" in json.dumps(v)}
        for name in ("UnknownSourcesAlarm", "SourceApplicationAlarm"):
            props = resolve(alarms[name]["Properties"], conditions)
            read = []
            if props.get("Dimensions"):
                read.append(frozenset(d["Name"] for d in props["Dimensions"]))
            for m in props.get("Metrics") or []:
                e = m.get("Expression")
                e = as_list(e["Fn::Sub"])[0] if isinstance(e, dict) else e
                mt = re.search(r"SCHEMA\(\"[^\"]*\",\s*([^)]*)\)", e or "")
                if mt:
                    read.append(frozenset(x.strip() for x in mt.group(1).split(",")))
            check(read, f"{name} under MetricDimensions {model!r}: reads no metric")
            for r in read:
                check(r in sets, f"{name} under MetricDimensions {model!r} reads {sorted(r)}, which is not published: it would never fire")
    check_dashboard_models(t, allowed)
    names = t["Parameters"]["MetricNames"]
    pattern = names["AllowedPattern"]
    check(re.fullmatch(pattern, names["Default"]), "MetricNames' default does not match its AllowedPattern")
    for ok in ("Requests", "Bytes,Requests", "Requests, Latency"):
        check(re.fullmatch(pattern, ok), f"MetricNames' pattern refuses {ok!r}")
    for bad in ("Bytes", "Bytes,Latency", "RequestsX", ""):
        check(not re.fullmatch(pattern, bad), f"MetricNames' pattern accepts {bad!r}, which blinds the alarms")


def check_dashboard_models(t, allowed):
    """Under every accepted MetricDimensions value, the dashboard's
    per-application widgets (totals, requests, errors, unknown sources) read
    a dimension set the aggregator publishes: a widget that SEARCHes the
    rollup alone is empty under the pairs-only models."""
    sub = as_list(t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"])
    body, variables = sub[0], (sub[1] if len(sub) > 1 else {})
    check(not re.search(r"SEARCH\('\{\$\{Namespace\},SourceApplication\}", body),
          "the dashboard SEARCHes the [SourceApplication] rollup, which the pairs-only models do not publish")
    for model in allowed:
        sets = published_sets(model)
        conditions = {c: condition_value(v, t, {"MetricDimensions": model})
                      for c, v in t["Conditions"].items()
                      if "MetricDimensions" in json.dumps(v)}
        values = {k: resolve(v, conditions) for k, v in variables.items()}
        rendered = re.sub(r"\$\{(\w+)\}", lambda m: str(values.get(m.group(1), m.group(0))), body)
        read = re.findall(r'SCHEMA\(\\"\$\{Namespace\}\\",\s*([^)]*)\)', rendered)
        check(len(read) >= 5, f"the dashboard reads {len(read)} per-application queries, expected totals, requests, 2 errors, unknown")
        for r in read:
            dims = frozenset(x.strip() for x in r.split(","))
            check(dims in sets,
                  f"the dashboard under MetricDimensions {model!r} reads {sorted(dims)}, which is not published: its widget would be empty")


def rust_const(text, name):
    """The integer fields of a Rust `const NAME: T = T { a: 1, ... };` or the
    value of `const NAME: i64 = 1;`."""
    m = re.search(r"const " + name + r": \w+ = (\w+ \{(.*?)\}|(\d+));", text, re.S)
    if not m:
        return None
    if m.group(3):
        return int(m.group(3))
    return {k: int(v) for k, v in re.findall(r"(\w+): (\d+)", m.group(2))}


def check_timing(t):
    """The alarms' evaluation is the one the timing rule was checked for."""
    timing = source("aggregator-lambda/src/notify/timing.rs")
    flood = rust_const(timing, "STACK_FLOOD_ALARM")
    lag = rust_const(timing, "STACK_LAG_ALARM")
    if not check(flood and lag, "timing.rs has no STACK_FLOOD_ALARM / STACK_LAG_ALARM"):
        return
    r = t["Resources"]
    for name in ("UnknownSourcesAlarm", "SourceApplicationAlarm"):
        p = r[name]["Properties"]
        check(p["EvaluationPeriods"] == flood["evaluation_periods"],
              f"{name}: EvaluationPeriods {p['EvaluationPeriods']} is not timing.rs's {flood['evaluation_periods']}")
        check(p.get("DatapointsToAlarm") == flood["datapoints_to_alarm"],
              f"{name}: DatapointsToAlarm is not timing.rs's {flood['datapoints_to_alarm']}")
        periods = [p.get("Period")] + [m.get("Period") for m in as_list(resolve(p.get("Metrics") or [], {"NoRollup": True}))]
        for period in periods:
            if isinstance(period, dict):
                period = period["Fn::If"][2]
            if period is not None:
                check(period == flood["period"], f"{name}: Period {period} is not timing.rs's {flood['period']}")
    p = r["IteratorAgeAlarm"]["Properties"]
    stat = [m["MetricStat"] for m in p["Metrics"] if "MetricStat" in m][0]
    check(stat["Period"] == lag["period"], "IteratorAgeAlarm: Period is not timing.rs's")
    check(p["EvaluationPeriods"] == lag["evaluation_periods"] == p.get("DatapointsToAlarm"),
          "IteratorAgeAlarm: EvaluationPeriods/DatapointsToAlarm are not timing.rs's")
    param = t["Parameters"]["MaxIteratorAgeSeconds"]
    check(param["Default"] == rust_const(timing, "STACK_LAG_THRESHOLD"),
          "MaxIteratorAgeSeconds' default is not timing.rs's STACK_LAG_THRESHOLD")
    check(param.get("MaxValue") == rust_const(timing, "STACK_MAX_LAG_THRESHOLD"),
          "MaxIteratorAgeSeconds' MaxValue is not timing.rs's STACK_MAX_LAG_THRESHOLD")


def check_agent_policy(t):
    policy = t["Resources"]["AgentPolicy"]["Properties"]["PolicyDocument"]
    stmts = as_list(policy["Statement"])
    put = [s for s in stmts if grants(s, "cloudwatch:PutMetricData")]
    check(put, "the agent policy does not allow cloudwatch:PutMetricData (self-metrics)")
    for s in put:
        cond = s.get("Condition", {}).get("StringEquals", {}).get("cloudwatch:namespace")
        check(cond == {"Ref": "AgentNamespace"},
              "the agents' PutMetricData is not conditioned on cloudwatch:namespace = AgentNamespace")
    default = t["Parameters"]["AgentNamespace"]["Default"]
    config_rs = source("agent/src/config")
    check(f'namespace: "{default}".into()' in config_rs,
          f"AgentNamespace default {default!r} is not the agent's default namespace (agent/src/config/)")
    desc = json.dumps(t).lower()
    check("no self-metrics" not in desc, "the template still says the agent has no self-metrics")


def check_notifier(t):
    r = t["Resources"]
    env = r["Aggregator"]["Properties"]["Environment"]["Variables"]
    check(ref_name(env.get("TAILRACE_NOTIFY_TOPIC")) == "NotificationTopic",
          "the aggregator has no TAILRACE_NOTIFY_TOPIC = NotificationTopic")
    subs = [s["Properties"] for s in resources(t, "AWS::SNS::Subscription").values()]
    check(any(s["Protocol"] == "lambda" and ref_name(s["TopicArn"]) == "AlarmTopic"
              and ref_name(s["Endpoint"]) == "Aggregator" for s in subs),
          "the aggregator is not subscribed to the alarm topic")
    perms = [p["Properties"] for p in resources(t, "AWS::Lambda::Permission").values()]
    check(any(p["Principal"] == "sns.amazonaws.com" and ref_name(p["SourceArn"]) == "AlarmTopic"
              for p in perms), "SNS may not invoke the aggregator")
    stmts = as_list(r["AggregatorRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"])
    flat = []
    for s in stmts:
        if "Fn::If" in s:
            flat.extend(x for x in s["Fn::If"][1:] if isinstance(x, dict) and "Effect" in x)
        else:
            flat.append(s)
    check(any(grants(s, "sns:Publish") and ref_name(s["Resource"]) == "NotificationTopic" for s in flat),
          "the aggregator may not publish to the notification topic")
    for action in ("cloudwatch:GetMetricData", "cloudwatch:ListMetrics",
                   "ec2:DescribeNetworkInterfaces", "ec2:DescribeInstances", "ec2:DescribeVpcs"):
        check(any(grants(s, action) for s in flat), f"the aggregator may not {action}")
    # Client tallies: the variable names the bucket the role may write,
    # read and list under the same prefix.
    tallies = env.get("TAILRACE_TALLIES", {})
    text = as_list(tallies.get("Fn::Sub", ""))[0] if isinstance(tallies, dict) else ""
    mt = re.fullmatch(r"s3://\$\{(\w+)\}/([\w/-]+/)", text)
    if check(mt, f"TAILRACE_TALLIES {tallies!r} is not s3://${{Bucket}}/prefix/"):
        bucket, prefix = mt.group(1), mt.group(2)
        check(bucket in r and r[bucket]["Type"] == "AWS::S3::Bucket", f"TAILRACE_TALLIES names no bucket of this stack ({bucket})")
        objects = {"Fn::Sub": f"${{{bucket}.Arn}}/{prefix}*"}
        for action in ("s3:PutObject", "s3:GetObject"):
            check(any(grants(s, action) and s.get("Resource") == objects for s in flat),
                  f"the aggregator may not {action} on {prefix}* of {bucket}")
        check(any(grants(s, "s3:ListBucket") and ref_name(s.get("Resource")) == bucket
                  and s.get("Condition", {}).get("StringLike", {}).get("s3:prefix") == f"{prefix}*"
                  for s in flat), f"the aggregator may not list {prefix} of {bucket}")
        rules = r[bucket]["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
        check(any(x.get("ExpirationInDays") and x.get("Prefix") == prefix for x in rules),
              f"{bucket}: the tallies never expire")
    key = key_of_topic(r["NotificationTopic"]["Properties"])
    if key in r:
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            check(any(grants(s, action) and ref_name(s["Resource"]) == key for s in flat),
                  f"the aggregator may not {action} with {key} (encrypted notification topic)")


# Name-like properties and their AWS length limits.
NAME_LIMITS = {
    ("AWS::Lambda::Function", "FunctionName"): 64,
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::Logs::QueryDefinition", "Name"): 255,
    ("AWS::KMS::Alias", "AliasName"): 256,
    ("AWS::CloudWatch::Dashboard", "DashboardName"): 255,
    ("AWS::IAM::Role", "RoleName"): 64,
    ("AWS::SQS::Queue", "QueueName"): 80,
    ("AWS::SNS::Topic", "TopicName"): 256,
}


def substituted_length(value, t):
    """Length of a name when the stack name has its maximum, 128 characters."""
    if isinstance(value, str):
        return len(value)
    if "Ref" in value and value["Ref"] == "AWS::StackName":
        return 128
    if "Fn::Sub" in value:
        s = as_list(value["Fn::Sub"])[0]
        s = s.replace("${AWS::StackName}", "x" * 128)
        for m in re.findall(r"\$\{([A-Za-z0-9:]+)\}", s):
            p = t["Parameters"].get(m, {})
            s = s.replace("${%s}" % m, "x" * int(p.get("MaxLength", 255)))
        return len(s)
    return 0


def check_names(t):
    for name, res in t["Resources"].items():
        for (rtype, prop), limit in NAME_LIMITS.items():
            if res["Type"] == rtype and prop in res.get("Properties", {}):
                n = substituted_length(res["Properties"][prop], t)
                check(n <= limit, f"{name}.{prop}: {n} characters with a 128-character stack name (limit {limit})")
    for p in ("Namespace", "AgentNamespace"):
        pattern = t["Parameters"][p]["AllowedPattern"]
        check(re.fullmatch(pattern, t["Parameters"][p]["Default"]), f"{p}: the default does not match AllowedPattern")
        for bad in ("AWS/EC2", "AWS/Tailrace", ""):
            check(not re.fullmatch(pattern, bad), f"{p}: AllowedPattern accepts {bad!r}")
    stream = t["Resources"]["Stream"]
    check(stream.get("DeletionPolicy") == "Retain", "the stream has no DeletionPolicy: Retain")
    code_key = t["Parameters"]["CodeKey"]
    check("Default" not in code_key, "CodeKey has a default: reusing it never redeploys the code")
    for name, fn in resources(t, "AWS::Lambda::Function").items():
        code = fn["Properties"]["Code"]
        check("S3ObjectVersion" in code, f"{name}: its code has no S3ObjectVersion (redeploy under the same key)")


def check_dashboard(t):
    body = t["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    body = as_list(body)[0]
    # What CloudWatch receives: ${!X} -> ${X}; other ${...} are substituted.
    rendered = re.sub(r"\$\{!", "${", re.sub(r"\$\{(?!!)[^}]+\}", "0", body))
    dash = json.loads(rendered)
    widgets = dash["widgets"]
    for w in widgets:
        for line in w.get("properties", {}).get("metrics", []):
            for part in line:
                if isinstance(part, dict) and "expression" in part and "Errors" in part["expression"]:
                    check("PROP('Dim.SourceApplication')" in part.get("label", ""),
                          f"widget {w['properties']['title']!r}: error line labelled {part.get('label')!r}, not by application")
    tables = [w for w in widgets if w.get("properties", {}).get("view") == "table" and w["type"] == "metric"]
    check(any("GROUP BY SourceApplication" in json.dumps(w) and "SUM(Requests)" in json.dumps(w) for w in tables),
          "the dashboard has no table of window totals per application")
    check(any(w["type"] == "log" and "contact" in w["properties"]["query"]
              and "notification sent" in w["properties"]["query"] for w in widgets),
          "the dashboard shows no contacts with window totals")
    # A conditional alarm (the inventory's) cannot be named in the body: it
    # may not exist.
    alarms = {n: a for n, a in resources(t, "AWS::CloudWatch::Alarm").items() if "Condition" not in a}
    listed = [w for w in widgets if w["type"] == "alarm"]
    check(listed and all(f"${{{n}.Arn}}" in body for n in alarms),
          "the dashboard's alarm widget does not list every alarm")


def role_statements(t, role):
    """Every statement of a role's inline policies (both branches of an !If)."""
    out = []
    for pol in t["Resources"][role]["Properties"].get("Policies", []):
        for s in as_list(pol["PolicyDocument"]["Statement"]):
            if "Fn::If" in s:
                out.extend(x for x in s["Fn::If"][1:] if isinstance(x, dict) and "Effect" in x)
            else:
                out.append(s)
    return out


def queue_alarmed(t, queue):
    return any(("AWS/SQS", "ApproximateNumberOfMessagesVisible") in metrics_of(a)
               and any(ref_name(d["Value"]) == queue for d in dimensions_of(a))
               for a in resources(t, "AWS::CloudWatch::Alarm").values())


def check_failures(t):
    r = t["Resources"]
    # 1. Stream retries end by age: a count runs out while a dead attempt's
    # claims are leased, and each bisected retry counts.
    for name, esm in resources(t, "AWS::Lambda::EventSourceMapping").items():
        p = esm["Properties"]
        retries = p.get("MaximumRetryAttempts", -1)
        age = p.get("MaximumRecordAgeInSeconds", -1)
        check(retries == -1 or retries >= 100,
              f"{name}: MaximumRetryAttempts {retries} runs out before a stuck claim clears (use -1: bounded by record age)")
        check(isinstance(age, int) and 60 <= age <= 86400,
              f"{name}: MaximumRecordAgeInSeconds {age} must bound the retries (60 s to the stream's 24 h default retention)")
        dest = p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        check(ref_name(dest) in r and queue_alarmed(t, ref_name(dest)),
              f"{name}: no alarmed on-failure destination")
    # 3, 4. Asynchronous invocations (SNS, EventBridge) are retried twice,
    # then dropped unless an on-failure destination keeps them.
    configs = {ref_name(c["Properties"]["FunctionName"]): c for c in resources(t, "AWS::Lambda::EventInvokeConfig").values()}
    async_fns = {ref_name(p["Properties"]["FunctionName"]) for p in resources(t, "AWS::Lambda::Permission").values()
                 if p["Properties"]["Principal"] in ("sns.amazonaws.com", "events.amazonaws.com")}
    check(async_fns >= {"Aggregator", "Inventory"}, f"asynchronously invoked functions: {sorted(async_fns)}")
    for fn in sorted(async_fns):
        cfg = configs.get(fn)
        if not check(cfg is not None, f"{fn} is invoked asynchronously and has no EventInvokeConfig: a failed event vanishes"):
            continue
        p = cfg["Properties"]
        check(p.get("Qualifier") == "$LATEST", f"{fn}: the EventInvokeConfig must apply to $LATEST (what SNS and EventBridge invoke)")
        check(cfg.get("Condition") == r[fn].get("Condition"), f"{fn}: its EventInvokeConfig's Condition differs from the function's")
        dest = ref_name(p.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"))
        if not check(dest in r and r[dest]["Type"] == "AWS::SQS::Queue", f"{fn}: no SQS on-failure destination"):
            continue
        check(queue_alarmed(t, dest), f"{fn}: no alarm on its failure queue {dest}")
        role = ref_name(r[fn]["Properties"]["Role"])
        check(any(grants(s, "sqs:SendMessage") and dest in [ref_name(x) for x in as_list(s["Resource"])]
                  for s in role_statements(t, role)),
              f"{fn}: its role {role} may not sqs:SendMessage to {dest}")
    # The notifier's own failures must reach a person without the notifier.
    for a in resources(t, "AWS::CloudWatch::Alarm").values():
        if any(ref_name(d["Value"]) == "NotifyFailures" for d in dimensions_of(a)):
            check([ref_name(x) for x in a["Properties"]["AlarmActions"]] == ["NotificationTopic"],
                  "the notify-failures alarm must go straight to NotificationTopic (through AlarmTopic it would need the notifier)")
    pol = [p["Properties"] for p in resources(t, "AWS::SNS::TopicPolicy").values()
           if "NotificationTopic" in [ref_name(x) for x in p["Properties"]["Topics"]]]
    check(any("cloudwatch.amazonaws.com" in json.dumps(p) for p in pol), "CloudWatch may not publish to NotificationTopic")
    # 4. One inventory writer at a time; a missing file is 403 without an
    # unconditioned ListBucket (an s3:prefix condition never matches a GetObject).
    check(r["Inventory"]["Properties"].get("ReservedConcurrentExecutions") == 1,
          "Inventory: ReservedConcurrentExecutions must be 1 (one writer of the file at a time)")
    for s in role_statements(t, "InventoryRole"):
        if grants(s, "s3:ListBucket"):
            check("Condition" not in s, "InventoryRole: a ListBucket grant with a condition does not make GetObject answer 404")
    # 5. Settings that keep promises.
    days = t["Parameters"]["ClaimRetentionDays"]
    check(days.get("MinValue", 0) >= 15 and days["Default"] >= 15,
          "ClaimRetentionDays must be at least 15: CloudWatch refuses datums older than 14 days, which is what makes an expired claim harmless")
    for name, b in resources(t, "AWS::S3::Bucket").items():
        if b["Properties"].get("VersioningConfiguration", {}).get("Status") == "Enabled":
            rules = b["Properties"].get("LifecycleConfiguration", {}).get("Rules", [])
            check(any(x.get("Status") == "Enabled" and "NoncurrentVersionExpiration" in x for x in rules),
                  f"{name}: versioned without NoncurrentVersionExpiration (every rewrite keeps a version for ever)")
    for name, st in resources(t, "AWS::Kinesis::Stream").items():
        if "Name" in st["Properties"] and st.get("DeletionPolicy") == "Retain":
            ops = source("docs/OPERATIONS.md")
            check("--change-set-type IMPORT" in ops and name in ops,
                  f"{name}: retained with a fixed Name, and docs/OPERATIONS.md does not say how to import it into a new stack")
    # 7. checkov skips carry their reason.
    for name, res in r.items():
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            check(len(str(skip.get("comment", "")).split()) >= 4, f"{name}: checkov skip {skip.get('id')} without a reason")


TEMPLATE = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "tailrace.yaml")


def main():
    with open(TEMPLATE) as f:
        t = yaml.load(f, Loader=CfnLoader)
    for c in (check_topics, check_alarms, check_models, check_timing, check_agent_policy, check_notifier,
              check_names, check_dashboard, check_failures):
        try:
            c(t)
        except (KeyError, TypeError, IndexError, ValueError) as e:
            FAILURES.append(f"{c.__name__}: template shape not as expected: {type(e).__name__} {e}")
    for f in FAILURES:
        print(f"{TEMPLATE}: {f}", file=sys.stderr)
    if FAILURES:
        sys.exit(1)
    print(f"{TEMPLATE}: {len(resources(t, 'AWS::CloudWatch::Alarm'))} alarms, topics and policies as promised")


if __name__ == "__main__":
    main()
