//! The stack's inventory block, read as text (moto does not judge IAM, and
//! does not run EventBridge rules): every resource is optional by the
//! parameter, the role allows exactly the documented actions on exactly the
//! one object, and every detail-type the rules route is one the handler
//! understands.

use std::collections::BTreeSet;

use serde_json::json;
use tailrace_inventory::event;

const TEMPLATE: &str = include_str!("../../../packaging/cloudformation/tailrace.yaml");
const BEGIN: &str = "# ------------------------------------------------ inventory updater (#13)";
const END: &str = "# -------------------------------------------- end inventory updater (#13)";

/// The block of the Resources section (the second delimited block).
fn resources_block() -> &'static str {
    let blocks: Vec<&str> = TEMPLATE
        .split(BEGIN)
        .skip(1)
        .map(|b| b.split(END).next().unwrap_or(""))
        .collect();
    assert_eq!(
        blocks.len(),
        2,
        "one parameter block and one resource block"
    );
    blocks[1]
}

/// Top-level resources (two-space indented keys) with their text.
fn resources(block: &str) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if line.starts_with("  ")
            && !line.starts_with("   ")
            && line.trim_end().ends_with(':')
            && !line.trim_start().starts_with('#')
        {
            out.push((line.trim().trim_end_matches(':').to_string(), String::new()));
        } else if let Some(last) = out.last_mut() {
            last.1.push_str(line);
            last.1.push('\n');
        }
    }
    out
}

#[test]
fn every_inventory_resource_is_optional() {
    let res = resources(resources_block());
    assert!(
        res.len() >= 9,
        "{:?}",
        res.iter().map(|r| &r.0).collect::<Vec<_>>()
    );
    for (name, body) in &res {
        assert!(
            body.contains("\n    Condition: InventoryEnabled\n"),
            "{name} lacks Condition: InventoryEnabled"
        );
    }
    assert!(TEMPLATE.contains("  InventoryEnabled: !Equals [!Ref InventoryUpdater, \"true\"]"));
    assert!(TEMPLATE.contains("  InventoryFunction:\n    Condition: InventoryEnabled\n"));
}

#[test]
fn the_role_is_least_privilege() {
    let res = resources(resources_block());
    let role = &res
        .iter()
        .find(|(n, _)| n == "InventoryRole")
        .expect("InventoryRole")
        .1;
    let actions: BTreeSet<&str> = role
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- ").or_else(|| l.strip_prefix("Action: ")))
        .filter(|a| a.contains(':') && !a.contains(' '))
        .collect();
    let expected: BTreeSet<&str> = [
        "ec2:DescribeInstances",
        "autoscaling:DescribeAutoScalingGroups",
        "s3:GetObject",
        "s3:PutObject",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        // The on-failure destination of the function's async invocations.
        "sqs:SendMessage",
        // The trust policy: Lambda may assume the role.
        "sts:AssumeRole",
    ]
    .into_iter()
    .collect();
    assert_eq!(actions, expected);
    // Object actions on the one key only. No ListBucket: a missing file
    // reads as 403, which the updater takes for "maybe missing"
    // (store::read); the If-None-Match: * write then tells.
    let rewrite = role
        .split("Sid: RewriteMetadata")
        .nth(1)
        .expect("RewriteMetadata")
        .split("- Sid:")
        .next()
        .unwrap_or("");
    assert!(
        rewrite.contains("Resource: !Sub \"${MetadataBucket.Arn}/${MetadataKey}\""),
        "{rewrite}"
    );
    assert!(!role.contains("s3:*") && !role.contains("Action: \"*\""));
    let sqs = role
        .split("Sid: OnFailureDestination")
        .nth(1)
        .expect("OnFailureDestination")
        .split("- Sid:")
        .next()
        .unwrap_or("");
    assert!(
        sqs.contains("Resource: !GetAtt InventoryFailures.Arn"),
        "{sqs}"
    );
}

#[test]
fn one_writer_at_a_time_and_failed_events_are_kept() {
    let res = resources(resources_block());
    let body = |name: &str| -> String {
        res.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
            .clone()
    };
    // Every update rewrites the one file: more writers only lose races.
    assert!(body("Inventory").contains("\n      ReservedConcurrentExecutions: 1\n"));
    let dest = body("InventoryFailureDestination");
    for want in [
        "Type: AWS::Lambda::EventInvokeConfig",
        "FunctionName: !Ref Inventory",
        "Qualifier: $LATEST",
        "Destination: !GetAtt InventoryFailures.Arn",
    ] {
        assert!(dest.contains(want), "{want}: {dest}");
    }
    assert!(body("InventoryFailures").contains("Type: AWS::SQS::Queue"));
    assert!(body("InventoryFailuresAlarm").contains("Value: !GetAtt InventoryFailures.QueueName"));
}

#[test]
fn the_rules_route_only_what_the_handler_understands() {
    let block = resources_block();
    let rule = |name: &str| -> String {
        resources(block)
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}"))
            .1
    };
    let asg = rule("InventoryAutoScalingRule");
    let types: Vec<String> = asg
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- EC2 Instance"))
        .map(|t| format!("EC2 Instance{t}"))
        .collect();
    assert_eq!(types.len(), 4, "{asg}");
    for t in &types {
        let e = json!({"source": "aws.autoscaling", "detail-type": t, "time": "2026-12-01T07:00:00Z", "detail": {"EC2InstanceId": "i-0123456789abcdef0"}});
        assert!(event::parse(&e).is_ok(), "{t}: {:?}", event::parse(&e));
    }
    let ec2 = rule("InventoryEc2Rule");
    assert!(ec2.contains("detail-type: [EC2 Instance State-change Notification]"));
    let states = ec2
        .split("state: [")
        .nth(1)
        .and_then(|s| s.split(']').next())
        .expect("states");
    for s in states.split(',').map(str::trim) {
        let e = json!({"source": "aws.ec2", "detail-type": "EC2 Instance State-change Notification", "detail": {"instance-id": "i-0abc", "state": s}});
        assert!(event::parse(&e).is_ok(), "{s}");
    }
    let sched = rule("InventorySchedule");
    assert!(sched.contains("ScheduleExpression: !Ref InventoryReconcileSchedule"));
    assert_eq!(
        event::parse(
            &json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
        ),
        Ok(event::Trigger::Reconcile)
    );
    // Each rule may invoke the function.
    for r in [
        "InventoryAutoScalingRule",
        "InventoryEc2Rule",
        "InventorySchedule",
    ] {
        assert!(
            block.contains(&format!("SourceArn: !GetAtt {r}.Arn")),
            "{r} has no Lambda permission"
        );
    }
}
