//! Another host on this machine: a network namespace of the test's own, joined to the
//! root namespace by a veth pair on a private /30 (10.231.x.y), so that cutting the wire
//! is a real partition rather than a killed process. Nothing outside the machine is ever
//! addressed: an `unreachable` route for the /30 stands behind the veth's own.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// A namespace `fg-<pid>-<role>` and its veth pair; all of it removed on drop (also
/// when the test panics).
pub struct Netns {
    pub name: String,
    /// The veth end in the root namespace, and the one inside.
    host_if: String,
    peer_if: String,
    /// The /30's first address (the network).
    net: Ipv4Addr,
    /// How many of the creation's commands succeeded (the fence, the namespace, the
    /// pair, …): drop undoes only what this guard made, never another test's.
    made: usize,
}

impl Netns {
    /// A new namespace for `role`, or `None` (said on stderr) where namespaces cannot be
    /// made here (not root, no `ip`): the caller falls back to loopback.
    pub fn create(role: &str) -> Option<Netns> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let mut ns = Netns {
            name: format!("fg-{pid}-{role}{n}"),
            // Interface names hold 15 bytes at most: "fgh" + a pid (7 digits) + "x" + n.
            host_if: format!("fgh{pid}x{n}"),
            peer_if: format!("fgp{pid}x{n}"),
            net: free_subnet(pid, n)?,
            made: 0,
        };
        let steps: [&[&str]; 8] = [
            &["netns", "add", &ns.name],
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns.peer_if,
            ],
            &["link", "set", &ns.peer_if, "netns", &ns.name],
            &[
                "addr",
                "add",
                &format!("{}/30", ns.outer()),
                "dev",
                &ns.host_if,
            ],
            &["link", "set", &ns.host_if, "up"],
            &[
                "-n",
                &ns.name,
                "addr",
                "add",
                &format!("{}/30", ns.inner()),
                "dev",
                &ns.peer_if,
            ],
            &["-n", &ns.name, "link", "set", &ns.peer_if, "up"],
            &["-n", &ns.name, "link", "set", "lo", "up"],
        ];
        // Behind the veth's own route, so that a packet for the /30 never takes the
        // default route while the link is down or gone.
        let fence = [
            "route",
            "add",
            "unreachable",
            &format!("{}/30", ns.net),
            "metric",
            "4000",
        ];
        for args in std::iter::once(&fence[..]).chain(steps) {
            if let Err(why) = ip(args) {
                eprintln!(
                    "network namespaces unavailable ({why}): the test runs on loopback instead"
                );
                return None;
            }
            ns.made += 1;
        }
        Some(ns)
    }

    /// The address of the root namespace's end.
    pub fn outer(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + 1)
    }

    /// The address inside the namespace, where its server listens.
    pub fn inner(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.net) + 2)
    }

    /// `program` to be run inside the namespace.
    pub fn exec(&self, program: &str) -> (String, Vec<String>) {
        let args = ["netns", "exec", &self.name, program];
        ("ip".into(), args.map(str::to_owned).to_vec())
    }

    /// Cuts the wire: the inner end goes down, and what the root namespace sends is
    /// lost (established connections hang, new ones find no host), as on a real
    /// partition. Checked: `port` inside no longer answers.
    pub fn cut(&self, port: u16) {
        ip(&["-n", &self.name, "link", "set", &self.peer_if, "down"]).expect("cut");
        let addr = SocketAddr::from((self.inner(), port));
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(),
            "{addr} still answers with the wire cut"
        );
    }

    /// Mends the wire.
    pub fn heal(&self) {
        ip(&["-n", &self.name, "link", "set", &self.peer_if, "up"]).expect("heal");
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace kills nothing: its servers are the test's children
        // (dropped before this guard), and the veth pair goes with it. Only what this
        // guard made is undone: the fence (1), the namespace (2), the pair (3).
        if self.made >= 2 {
            let _ = ip(&["netns", "del", &self.name]);
        }
        if self.made >= 3 {
            let _ = ip(&["link", "del", &self.host_if]);
        }
        if self.made >= 1 {
            let _ = ip(&[
                "route",
                "del",
                "unreachable",
                &format!("{}/30", self.net),
                "metric",
                "4000",
            ]);
        }
    }
}

/// A /30 in 10.231.0.0/16 that no interface here uses yet, picked from `pid` and `n` so
/// that parallel runs start apart.
fn free_subnet(pid: u32, n: u32) -> Option<Ipv4Addr> {
    let used = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let routes = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let base = u32::from(Ipv4Addr::new(10, 231, 0, 0));
    (0..16384u32)
        .map(|i| base + ((pid.wrapping_mul(64).wrapping_add(n).wrapping_add(i)) % 16384) * 4)
        .map(Ipv4Addr::from)
        .find(|net| {
            let (a, b) = (
                Ipv4Addr::from(u32::from(*net) + 1),
                Ipv4Addr::from(u32::from(*net) + 2),
            );
            !used.contains(&format!(" {a}/"))
                && !used.contains(&format!(" {b}/"))
                && !routes.contains(&format!("{net}/30"))
        })
}

/// `ip <args>`; the error says what failed.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}
