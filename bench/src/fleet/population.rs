//! The fleet's clients and the metadata file naming their applications.
//!
//! About 70% of clients sit in an application's block (a `/24` for most
//! applications, a `/16` for every tenth, an IPv6 `/48` for every
//! twentieth), the rest are unknown public addresses; about 8% of all
//! clients are IPv6. Which clients are busy depends on the service: each
//! service ranks the population from its own offset, with Zipf (s = 1)
//! popularity.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tailrace_wire::ClientKey;

use crate::rng::{Rng, Zipf};

/// One client: its address as the log writes it, and as the wire keys it.
#[derive(Debug, Clone)]
pub struct Client {
    /// `%h` text.
    pub text: String,
    /// The wire's key for it.
    pub key: ClientKey,
}

/// Clients, their popularity, and the metadata CSV.
#[derive(Debug)]
pub struct Population {
    clients: Vec<Client>,
    zipf: Zipf,
    csv: String,
}

fn v4_block(app: usize) -> (u8, u8) {
    ((app / 250) as u8, (app % 250) as u8)
}

impl Population {
    /// `clients` clients (at least 1) over `applications` applications (at least 1).
    pub fn new(rng: &mut Rng, clients: usize, applications: usize) -> Population {
        let apps = applications.max(1);
        let mut csv = String::from("ip_or_cidr,application,contact\n");
        for a in 0..apps {
            let (x, y) = v4_block(a);
            let contact = format!("team-{a:03}@example.com");
            if a % 10 == 9 {
                let _ = writeln!(csv, "10.{}.0.0/16,app-{a:03},{contact}", 100 + a / 10);
            } else {
                let _ = writeln!(csv, "10.{x}.{y}.0/24,app-{a:03},{contact}");
            }
            if a % 20 == 0 {
                let _ = writeln!(csv, "2001:db8:{a:x}::/48,app-{a:03},{contact}");
            }
        }
        let clients: Vec<Client> = (0..clients.max(1))
            .map(|_| {
                let ip = if rng.chance(0.08) {
                    let block = if rng.chance(0.5) {
                        (rng.below(apps.div_ceil(20) as u64) * 20) as u16
                    } else {
                        0xf000 + rng.below(256) as u16
                    };
                    IpAddr::V6(Ipv6Addr::new(
                        0x2001,
                        0xdb8,
                        block,
                        0,
                        0,
                        0,
                        rng.below(65_536) as u16,
                        1 + rng.below(65_535) as u16,
                    ))
                } else if rng.chance(0.3) {
                    IpAddr::V4(Ipv4Addr::new(
                        198,
                        51,
                        rng.below(256) as u8,
                        1 + rng.below(254) as u8,
                    ))
                } else {
                    let a = rng.below(apps as u64) as usize;
                    if a % 10 == 9 {
                        IpAddr::V4(Ipv4Addr::new(
                            10,
                            (100 + a / 10) as u8,
                            rng.below(256) as u8,
                            1 + rng.below(254) as u8,
                        ))
                    } else {
                        let (x, y) = v4_block(a);
                        IpAddr::V4(Ipv4Addr::new(10, x, y, 1 + rng.below(254) as u8))
                    }
                };
                Client {
                    text: ip.to_string(),
                    key: ClientKey::from(ip),
                }
            })
            .collect();
        let zipf = Zipf::new(clients.len(), 1.0);
        Population { clients, zipf, csv }
    }

    /// The metadata CSV.
    pub fn metadata_csv(&self) -> &str {
        &self.csv
    }

    /// A client of `service`, drawn by popularity.
    pub fn draw(&self, rng: &mut Rng, service: usize) -> &Client {
        let n = self.clients.len();
        let rank = self.zipf.sample(rng);
        // Each service ranks the population from its own offset.
        let offset = service.wrapping_mul(7919) % n;
        &self.clients[(rank + offset) % n]
    }
}
