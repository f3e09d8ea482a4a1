//! What the account says: DescribeInstances and DescribeAutoScalingGroups,
//! turned into [`Instance`]s for the planner (addresses of every network
//! interface, the owner from tags with the Auto Scaling group's as fallback).
//!
//! An event names instances: only their own groups are described (by the
//! `aws:autoscaling:groupName` tag EC2 puts on a group's instances), and
//! only for an instance whose own tags do not name both application and
//! contact. A scale-out of N instances then costs N small calls, not N
//! listings of every group in the account (each a page per 100 groups,
//! against Auto Scaling's shared request rate). The reconcile lists them
//! all, once.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use aws_sdk_autoscaling::error::DisplayErrorContext;
use aws_sdk_ec2::types::InstanceStateName;

use crate::owner::{self, Group, TagKeys};
use crate::plan::{Instance, State};

/// A call to EC2 or Auto Scaling failed.
#[derive(Debug, thiserror::Error)]
pub enum Ec2Error {
    /// DescribeInstances failed.
    #[error("ec2:DescribeInstances: {0}")]
    Instances(String),
    /// DescribeAutoScalingGroups failed.
    #[error("autoscaling:DescribeAutoScalingGroups: {0}")]
    Groups(String),
}

/// The two clients the updater reads the fleet with.
#[derive(Debug, Clone)]
pub struct Fleet {
    /// EC2.
    pub ec2: aws_sdk_ec2::Client,
    /// Auto Scaling.
    pub autoscaling: aws_sdk_autoscaling::Client,
    /// Tag keys naming the owner.
    pub keys: TagKeys,
}

/// Auto Scaling groups as described.
#[derive(Debug, Clone, Default)]
pub struct Groups {
    /// Each group by the ids of the instances it lists.
    pub by_instance: HashMap<String, Group>,
    /// Each group by its name.
    pub by_name: HashMap<String, Group>,
}

/// An instance as read, before its owner is resolved (for logs).
#[derive(Debug)]
pub struct Read {
    /// The planner's view.
    pub instance: Instance,
    /// Set when the application tag had to be repaired.
    pub sanitized: bool,
}

impl Fleet {
    /// Clients from one SDK configuration.
    pub fn new(config: &aws_config::SdkConfig, keys: TagKeys) -> Fleet {
        Fleet {
            ec2: aws_sdk_ec2::Client::new(config),
            autoscaling: aws_sdk_autoscaling::Client::new(config),
            keys,
        }
    }

    /// Every Auto Scaling group, by instance id.
    pub async fn groups_by_instance(&self) -> Result<HashMap<String, Group>, Ec2Error> {
        Ok(self.groups_named(&[]).await?.by_instance)
    }

    /// The groups named (every group when `names` is empty), by instance id
    /// and by name.
    pub async fn groups_named(&self, names: &[String]) -> Result<Groups, Ec2Error> {
        let mut out = Groups::default();
        let mut req = self.autoscaling.describe_auto_scaling_groups();
        for n in names {
            req = req.auto_scaling_group_names(n);
        }
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| Ec2Error::Groups(DisplayErrorContext(e).to_string()))?;
            for g in page.auto_scaling_groups() {
                let group = Group {
                    name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    tags: g
                        .tags()
                        .iter()
                        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                        .collect(),
                };
                for i in g.instances() {
                    if let Some(id) = i.instance_id() {
                        out.by_instance.insert(id.to_string(), group.clone());
                    }
                }
                out.by_name.insert(group.name.clone(), group);
            }
        }
        Ok(out)
    }

    /// The instances with these ids (all of them when `ids` is empty).
    /// An id EC2 does not know is reported gone (it was terminated long ago).
    pub async fn instances(&self, ids: &[String]) -> Result<Vec<Read>, Ec2Error> {
        let mut groups = if ids.is_empty() {
            self.groups_named(&[]).await?
        } else {
            Groups::default()
        };
        let mut described = Vec::new();
        let mut req = self.ec2.describe_instances();
        for id in ids {
            req = req.instance_ids(id);
        }
        let mut pages = req.into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let text = DisplayErrorContext(&e).to_string();
                    if !ids.is_empty() && text.contains("InvalidInstanceID") {
                        // Look the ids up one by one so the known ones are
                        // still read and only the unknown ones count as gone.
                        if ids.len() > 1 {
                            let mut all = Vec::new();
                            for id in ids {
                                all.extend(
                                    Box::pin(self.instances(std::slice::from_ref(id))).await?,
                                );
                            }
                            return Ok(all);
                        }
                        return Ok(vec![Read {
                            instance: Instance {
                                id: ids[0].clone(),
                                addresses: vec![],
                                owner: None,
                                launched_at: None,
                                state: State::Gone(None),
                            },
                            sanitized: false,
                        }]);
                    }
                    return Err(Ec2Error::Instances(text));
                }
            };
            for r in page.reservations() {
                described.extend(r.instances().iter().cloned());
            }
        }
        if !ids.is_empty() {
            // Only the groups of the instances whose own tags do not say it all.
            let names: BTreeSet<String> = described
                .iter()
                .filter(|i| !self.tags_name_owner(&tags_of(i)))
                .filter_map(|i| group_tag(&tags_of(i)))
                .collect();
            let names: Vec<String> = names.into_iter().collect();
            for chunk in names.chunks(MAX_GROUP_NAMES) {
                let named = self.groups_named(chunk).await?;
                groups.by_instance.extend(named.by_instance);
                groups.by_name.extend(named.by_name);
            }
        }
        let mut out = Vec::new();
        for i in &described {
            let Some(id) = i.instance_id() else { continue };
            let tags = tags_of(i);
            let group = groups.by_instance.get(id).cloned().or_else(|| {
                // An instance its group does not list yet (launching): the
                // group from the tag, or at least its name.
                group_tag(&tags).map(|name| {
                    groups
                        .by_name
                        .get(&name)
                        .cloned()
                        .unwrap_or(Group { name, tags: vec![] })
                })
            });
            let resolved = owner::resolve(&self.keys, &tags, group.as_ref());
            let state = match i.state().and_then(|s| s.name()) {
                Some(InstanceStateName::ShuttingDown) | Some(InstanceStateName::Terminated) => {
                    State::Gone(i.state_transition_reason().and_then(transition_time))
                }
                _ => State::Live,
            };
            out.push(Read {
                sanitized: resolved.as_ref().is_some_and(|r| r.sanitized),
                instance: Instance {
                    id: id.to_string(),
                    addresses: addresses(i),
                    owner: resolved.map(|r| r.owner),
                    launched_at: i.launch_time().and_then(|t| SystemTime::try_from(*t).ok()),
                    state,
                },
            });
        }
        Ok(out)
    }
}

/// Group names per DescribeAutoScalingGroups call (the API's limit).
const MAX_GROUP_NAMES: usize = 50;

/// The tag EC2 puts on every instance an Auto Scaling group launched.
const GROUP_TAG: &str = "aws:autoscaling:groupName";

fn tags_of(i: &aws_sdk_ec2::types::Instance) -> Vec<(String, String)> {
    i.tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect()
}

fn group_tag(tags: &[(String, String)]) -> Option<String> {
    tags.iter()
        .find(|(k, _)| k == GROUP_TAG)
        .map(|(_, v)| v.clone())
}

impl Fleet {
    /// Whether an instance's own tags name both its application and its
    /// contact, so its group's tags would change nothing.
    fn tags_name_owner(&self, tags: &[(String, String)]) -> bool {
        let set = |key: &str| tags.iter().any(|(k, v)| k == key && !v.trim().is_empty());
        set(&self.keys.application) && set(&self.keys.contact)
    }
}

/// Private IPv4 and IPv6 addresses of every network interface (and the
/// instance's primary ones, which an emulator may fill alone), deduplicated.
fn addresses(i: &aws_sdk_ec2::types::Instance) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    let mut push = |s: Option<&str>| {
        if let Some(a) = s.and_then(|s| s.parse::<IpAddr>().ok()) {
            if !out.contains(&a) {
                out.push(a);
            }
        }
    };
    push(i.private_ip_address());
    push(i.ipv6_address());
    for ni in i.network_interfaces() {
        push(ni.private_ip_address());
        for p in ni.private_ip_addresses() {
            push(p.private_ip_address());
        }
        for v6 in ni.ipv6_addresses() {
            push(v6.ipv6_address());
        }
    }
    out.sort();
    out
}

/// The time in a state transition reason like
/// `User initiated (2026-12-01 07:00:00 GMT)` (moto writes `UTC`).
fn transition_time(reason: &str) -> Option<SystemTime> {
    let start = reason.find('(')? + 1;
    let rest = &reason[start..];
    let end = rest.find(" GMT)").or_else(|| rest.find(" UTC)"))? + start;
    humantime::parse_rfc3339_weak(&reason[start..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_read_from_the_reason() {
        let t = transition_time("User initiated (2026-12-01 07:00:00 GMT)").expect("time");
        assert_eq!(
            humantime::format_rfc3339_seconds(t).to_string(),
            "2026-12-01T07:00:00Z"
        );
        assert!(transition_time("User initiated (2026-12-01 07:00:00 UTC)").is_some());
        assert_eq!(transition_time("Client.UserInitiatedShutdown"), None);
        assert_eq!(transition_time(""), None);
    }
}
