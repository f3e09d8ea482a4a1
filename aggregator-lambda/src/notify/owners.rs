//! Who is behind an address: what EC2 knows about the top addresses of a
//! flood, so the person on call can find an owner the metadata file does
//! not name.
//!
//! For each address (at most [`MAX_ADDRESSES`] per message), in three calls
//! whatever the number of addresses:
//! 1. `DescribeNetworkInterfaces` filtered by `addresses.private-ip-address`
//!    (IPv6: `ipv6-addresses.ipv6-address`): the interface, its VPC and
//!    subnet, and either the instance it is attached to or, for an
//!    interface AWS manages (load balancer, NAT gateway, Lambda, VPC
//!    endpoint…), its type, requester and description;
//! 2. `DescribeInstances` of those instances: their `Name` and
//!    `aws:autoscaling:groupName` tags;
//! 3. for an address no interface has, `DescribeVpcs`: the VPC block it
//!    falls in ("in 10.4.0.0/16 (vpc-…), no network interface now": a
//!    released address, a terminated instance's), or "outside this
//!    account's VPCs".
//!
//! Answers are cached per [`OwnerLookup`] (one per invocation). A call
//! that fails (no permission, throttled, no answer within
//! [`CALL_TIMEOUT`]) is said in the message for the addresses it concerned;
//! it never fails the notification.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_ec2::types::{Filter, NetworkInterface};
use ipnet::IpNet;

/// An instance's `Name` and `aws:autoscaling:groupName` tags.
type NameAndGroup = (Option<String>, Option<String>);

/// Addresses looked up per message.
pub const MAX_ADDRESSES: usize = 10;
/// How long one EC2 call may take, retries included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The instance an interface is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InstanceInfo {
    /// Instance id.
    pub id: String,
    /// Its `Name` tag.
    pub name: Option<String>,
    /// Its `aws:autoscaling:groupName` tag.
    pub group: Option<String>,
    /// Why its tags are missing, when `DescribeInstances` failed.
    pub tags_error: Option<String>,
}

/// A network interface holding the address.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Interface {
    /// Interface id (`eni-…`).
    pub id: String,
    /// Its VPC.
    pub vpc: Option<String>,
    /// Its subnet.
    pub subnet: Option<String>,
    /// The instance it is attached to.
    pub instance: Option<InstanceInfo>,
    /// EC2's `InterfaceType` (`nat_gateway`, `network_load_balancer`,
    /// `lambda`, `vpc_endpoint`, `interface`…).
    pub kind: Option<String>,
    /// Whether AWS manages it for a service.
    pub requester_managed: bool,
    /// The service or account that created it.
    pub requester: Option<String>,
    /// Its description (a load balancer's name, a NAT gateway's id…).
    pub description: Option<String>,
}

/// What AWS knows about one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Interfaces holding it (several when VPCs overlap).
    Interfaces(Vec<Interface>),
    /// No interface has it, but it is in one of the account's VPC blocks.
    InVpc {
        /// The VPC's block.
        cidr: String,
        /// The VPC.
        vpc: String,
    },
    /// No interface has it and no VPC block holds it.
    Outside,
    /// The log had a name, not an address.
    NotAnAddress,
    /// EC2 could not be asked.
    LookupFailed(String),
}

impl Interface {
    fn place(&self) -> String {
        match (&self.vpc, &self.subnet) {
            (Some(v), Some(s)) => format!(" in {v} / {s}"),
            (Some(v), None) => format!(" in {v}"),
            _ => String::new(),
        }
    }
}

impl fmt::Display for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(i) = &self.instance {
            write!(f, "EC2 instance {}", i.id)?;
            if let Some(name) = &i.name {
                write!(f, " \"{name}\"")?;
            }
            if let Some(group) = &i.group {
                write!(f, " (Auto Scaling group {group})")?;
            }
            if let Some(e) = &i.tags_error {
                write!(f, " (tags not read: {e})")?;
            }
            return write!(f, "{}", self.place());
        }
        let kind = match self.kind.as_deref() {
            Some("nat_gateway") => "NAT gateway",
            Some("network_load_balancer") => "Network Load Balancer",
            Some("gateway_load_balancer") => "Gateway Load Balancer",
            Some("gateway_load_balancer_endpoint") => "Gateway Load Balancer endpoint",
            Some("load_balancer") => "load balancer",
            Some("lambda") => "Lambda function",
            Some("vpc_endpoint") => "VPC endpoint",
            Some("api_gateway_managed") => "API Gateway",
            Some("transit_gateway") => "transit gateway",
            Some("global_accelerator_managed") => "Global Accelerator",
            _ if self.requester_managed => "AWS-managed",
            _ => "unattached",
        };
        write!(f, "{kind} interface {}", self.id)?;
        if let Some(d) = self.description.as_deref().filter(|d| !d.is_empty()) {
            write!(f, " \"{d}\"")?;
        }
        if let Some(r) = &self.requester {
            write!(f, " (requester {r})")?;
        }
        write!(f, "{}", self.place())
    }
}

impl Owner {
    /// The text of the message's "what AWS knows" column; `unknown` adds
    /// that no row of the metadata file has the address.
    pub fn describe(&self, unknown: bool) -> String {
        let no_app = if unknown { ", no application" } else { "" };
        match self {
            Owner::Interfaces(list) => {
                let parts: Vec<String> = list.iter().map(ToString::to_string).collect();
                parts.join("; or ")
            }
            Owner::InVpc { cidr, vpc } => {
                format!("in {cidr} ({vpc}){no_app}; no network interface has it now")
            }
            Owner::Outside => "outside this account's VPCs".into(),
            Owner::NotAnAddress => "not an IP address (the log has a name)".into(),
            Owner::LookupFailed(why) => format!("not looked up: {why}"),
        }
    }
}

/// EC2 lookups for one invocation, with their answers cached.
pub struct OwnerLookup {
    ec2: Option<aws_sdk_ec2::Client>,
    cache: HashMap<String, Owner>,
    vpcs: Option<Result<Vec<(IpNet, String)>, String>>,
}

impl OwnerLookup {
    /// Lookups through `ec2`; `None` answers every address "not looked up".
    pub fn new(ec2: Option<aws_sdk_ec2::Client>) -> OwnerLookup {
        OwnerLookup {
            ec2,
            cache: HashMap::new(),
            vpcs: None,
        }
    }

    /// What AWS knows about each of `addresses` (the first
    /// [`MAX_ADDRESSES`]), in order.
    pub async fn owners(&mut self, addresses: &[String]) -> Vec<Owner> {
        let addresses = &addresses[..addresses.len().min(MAX_ADDRESSES)];
        let mut missing: Vec<(String, IpAddr)> = Vec::new();
        for a in addresses {
            if self.cache.contains_key(a) || missing.iter().any(|(m, _)| m == a) {
                continue;
            }
            match a.parse::<IpAddr>() {
                Ok(ip) => missing.push((a.clone(), ip)),
                Err(_) => {
                    self.cache.insert(a.clone(), Owner::NotAnAddress);
                }
            }
        }
        if !missing.is_empty() {
            self.look_up(&missing).await;
        }
        addresses
            .iter()
            .map(|a| {
                self.cache
                    .get(a)
                    .cloned()
                    .unwrap_or_else(|| Owner::LookupFailed("no answer".into()))
            })
            .collect()
    }

    async fn look_up(&mut self, missing: &[(String, IpAddr)]) {
        let Some(ec2) = self.ec2.clone() else {
            for (a, _) in missing {
                self.cache.insert(
                    a.clone(),
                    Owner::LookupFailed(
                        "no EC2 client (the notifier was built without one)".into(),
                    ),
                );
            }
            return;
        };
        let mut found: HashMap<IpAddr, Vec<Interface>> = HashMap::new();
        let mut failed: HashMap<IpAddr, String> = HashMap::new();
        let v4: Vec<IpAddr> = missing
            .iter()
            .map(|(_, ip)| *ip)
            .filter(IpAddr::is_ipv4)
            .collect();
        let v6: Vec<IpAddr> = missing
            .iter()
            .map(|(_, ip)| *ip)
            .filter(IpAddr::is_ipv6)
            .collect();
        for (filter, ips) in [
            ("addresses.private-ip-address", v4),
            ("ipv6-addresses.ipv6-address", v6),
        ] {
            if ips.is_empty() {
                continue;
            }
            match interfaces(&ec2, filter, &ips).await {
                Ok(enis) => {
                    for eni in &enis {
                        for ip in &ips {
                            if holds(eni, ip) {
                                found.entry(*ip).or_default().push(interface_of(eni));
                            }
                        }
                    }
                }
                Err(e) => {
                    for ip in ips {
                        failed.insert(ip, e.clone());
                    }
                }
            }
        }
        self.add_instance_tags(&ec2, &mut found).await;
        for (address, ip) in missing {
            let owner = if let Some(list) = found.remove(ip) {
                Owner::Interfaces(list)
            } else if let Some(e) = failed.remove(ip) {
                Owner::LookupFailed(e)
            } else {
                match self.vpc_of(&ec2, *ip).await {
                    Ok(Some((cidr, vpc))) => Owner::InVpc { cidr, vpc },
                    Ok(None) => Owner::Outside,
                    Err(e) => Owner::LookupFailed(format!(
                        "no network interface in this account's VPCs has it, and {e}"
                    )),
                }
            };
            self.cache.insert(address.clone(), owner);
        }
    }

    /// Fill in the `Name` and Auto Scaling group of the instances found.
    async fn add_instance_tags(
        &self,
        ec2: &aws_sdk_ec2::Client,
        found: &mut HashMap<IpAddr, Vec<Interface>>,
    ) {
        let mut ids: Vec<String> = found
            .values()
            .flatten()
            .filter_map(|i| i.instance.as_ref().map(|x| x.id.clone()))
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        let call = ec2.describe_instances().set_instance_ids(Some(ids)).send();
        let tags: Result<HashMap<String, NameAndGroup>, String> =
            answer("DescribeInstances", call).await.map(|out| {
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .filter_map(|i| {
                        let tag = |key: &str| {
                            i.tags()
                                .iter()
                                .find(|t| t.key() == Some(key))
                                .and_then(|t| t.value().map(str::to_owned))
                        };
                        Some((
                            i.instance_id()?.to_owned(),
                            (tag("Name"), tag("aws:autoscaling:groupName")),
                        ))
                    })
                    .collect()
            });
        for instance in found
            .values_mut()
            .flatten()
            .filter_map(|i| i.instance.as_mut())
        {
            match &tags {
                Ok(map) => {
                    if let Some((name, group)) = map.get(&instance.id) {
                        instance.name = name.clone();
                        instance.group = group.clone();
                    }
                }
                Err(e) => instance.tags_error = Some(e.clone()),
            }
        }
    }

    /// The account's VPC block holding `ip` (read once per lookup).
    async fn vpc_of(
        &mut self,
        ec2: &aws_sdk_ec2::Client,
        ip: IpAddr,
    ) -> Result<Option<(String, String)>, String> {
        if self.vpcs.is_none() {
            self.vpcs = Some(vpc_blocks(ec2).await);
        }
        match self.vpcs.as_ref() {
            Some(Ok(blocks)) => Ok(blocks
                .iter()
                .filter(|(net, _)| net.contains(&ip))
                .max_by_key(|(net, _)| net.prefix_len())
                .map(|(net, vpc)| (net.to_string(), vpc.clone()))),
            Some(Err(e)) => Err(e.clone()),
            None => Err("DescribeVpcs was not called".into()),
        }
    }
}

/// The answer of one EC2 call within [`CALL_TIMEOUT`], or why not, in words.
async fn answer<T, E, R>(
    operation: &str,
    call: impl std::future::Future<Output = Result<T, aws_sdk_ec2::error::SdkError<E, R>>>,
) -> Result<T, String>
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(format!(
            "EC2 {operation}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(e)
        )),
        Err(_) => Err(format!(
            "EC2 {operation}: no answer within {CALL_TIMEOUT:?}"
        )),
    }
}

/// The interfaces holding any of `ips`, by one filtered call (paged).
async fn interfaces(
    ec2: &aws_sdk_ec2::Client,
    filter: &str,
    ips: &[IpAddr],
) -> Result<Vec<NetworkInterface>, String> {
    let filter = Filter::builder()
        .name(filter)
        .set_values(Some(ips.iter().map(ToString::to_string).collect()))
        .build();
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let call = ec2
            .describe_network_interfaces()
            .filters(filter.clone())
            .set_next_token(token.clone())
            .send();
        let page = answer("DescribeNetworkInterfaces", call).await?;
        out.extend(page.network_interfaces().iter().cloned());
        token = page
            .next_token()
            .map(str::to_owned)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

/// Whether `eni` holds `ip` (primary or secondary, IPv4 or IPv6).
fn holds(eni: &NetworkInterface, ip: &IpAddr) -> bool {
    let same = |text: Option<&str>| text.and_then(|t| t.parse::<IpAddr>().ok()) == Some(*ip);
    same(eni.private_ip_address())
        || eni
            .private_ip_addresses()
            .iter()
            .any(|a| same(a.private_ip_address()))
        || eni.ipv6_addresses().iter().any(|a| same(a.ipv6_address()))
}

fn interface_of(eni: &NetworkInterface) -> Interface {
    Interface {
        id: eni.network_interface_id().unwrap_or("?").to_owned(),
        vpc: eni.vpc_id().map(str::to_owned),
        subnet: eni.subnet_id().map(str::to_owned),
        instance: eni
            .attachment()
            .and_then(|a| a.instance_id())
            .filter(|id| !id.is_empty())
            .map(|id| InstanceInfo {
                id: id.to_owned(),
                ..InstanceInfo::default()
            }),
        kind: eni.interface_type().map(|t| t.as_str().to_owned()),
        requester_managed: eni.requester_managed().unwrap_or(false),
        requester: eni.requester_id().map(str::to_owned),
        description: eni.description().map(str::to_owned),
    }
}

/// Every IPv4 and IPv6 block of the account's VPCs in this region.
async fn vpc_blocks(ec2: &aws_sdk_ec2::Client) -> Result<Vec<(IpNet, String)>, String> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let call = ec2.describe_vpcs().set_next_token(token.clone()).send();
        let page = answer("DescribeVpcs", call).await?;
        for vpc in page.vpcs() {
            let id = vpc.vpc_id().unwrap_or("?").to_owned();
            let blocks = vpc
                .cidr_block()
                .into_iter()
                .chain(
                    vpc.cidr_block_association_set()
                        .iter()
                        .filter_map(|a| a.cidr_block()),
                )
                .chain(
                    vpc.ipv6_cidr_block_association_set()
                        .iter()
                        .filter_map(|a| a.ipv6_cidr_block()),
                );
            for block in blocks {
                if let Ok(net) = block.parse::<IpNet>() {
                    if !out.iter().any(|(n, v)| *n == net && *v == id) {
                        out.push((net, id.clone()));
                    }
                }
            }
        }
        token = page
            .next_token()
            .map(str::to_owned)
            .filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_message_says_of_each_kind() {
        let instance = Interface {
            id: "eni-1".into(),
            vpc: Some("vpc-1".into()),
            subnet: Some("subnet-2".into()),
            instance: Some(InstanceInfo {
                id: "i-0abc".into(),
                name: Some("web-7".into()),
                group: Some("web-asg".into()),
                tags_error: None,
            }),
            ..Interface::default()
        };
        assert_eq!(
            Owner::Interfaces(vec![instance]).describe(true),
            "EC2 instance i-0abc \"web-7\" (Auto Scaling group web-asg) in vpc-1 / subnet-2"
        );
        let nat = Interface {
            id: "eni-2".into(),
            vpc: Some("vpc-1".into()),
            kind: Some("nat_gateway".into()),
            requester_managed: true,
            requester: Some("amazon-vpc".into()),
            description: Some("Interface for NAT Gateway nat-0a".into()),
            ..Interface::default()
        };
        assert_eq!(
            Owner::Interfaces(vec![nat]).describe(false),
            "NAT gateway interface eni-2 \"Interface for NAT Gateway nat-0a\" (requester amazon-vpc) in vpc-1"
        );
        let in_vpc = Owner::InVpc {
            cidr: "10.4.0.0/16".into(),
            vpc: "vpc-9".into(),
        };
        assert_eq!(
            in_vpc.describe(true),
            "in 10.4.0.0/16 (vpc-9), no application; no network interface has it now"
        );
        assert_eq!(Owner::Outside.describe(true), "outside this account's VPCs");
    }

    #[tokio::test]
    async fn without_a_client_every_address_says_why() {
        let mut lookup = OwnerLookup::new(None);
        let owners = lookup
            .owners(&["10.0.0.1".into(), "crawler.example".into()])
            .await;
        assert!(matches!(&owners[0], Owner::LookupFailed(e) if e.contains("no EC2 client")));
        assert_eq!(owners[1], Owner::NotAnAddress);
    }
}
