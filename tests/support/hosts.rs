//! Several hosts on one machine: one network namespace per host, each with its own address on
//! a bridge (veth pairs), as separate machines on one LAN. Processes enter a host's namespace
//! with `nsenter --net` only, so they share the file system and its mounts with the test
//! (`ip netns exec` would give them a mount namespace of their own and hide FUSE mounts).
//! What tells the hosts apart besides the address is `NODE_NAME` and a run directory per host:
//! the namespaces share the host name.
//!
//! A host's cable can be cut (its bridge port taken down): no reset reaches its peers, as when
//! a node loses its network. Needs root and iproute2. Everything made is removed on drop.

use std::os::unix::process::CommandExt;
use std::path::Path;
use super::far::run;
use std::process::{Child, Command, Stdio};

pub struct Hosts {
    bridge: String,
    pub hosts: Vec<Host>,
}

pub struct Host {
    pub name: String,
    pub ns: String,
    pub ip: String,
    /// The host's end of its cable, on the bridge.
    port: String,
}

impl Hosts {
    /// One host per name, on a bridge of their own (10.251.X.0/24; the root namespace is .1).
    pub fn up(names: &[&str]) -> Result<Hosts, String> {
        // Unique among the tests of this binary (threads of one process) and across binaries.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let seq = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 10 + seq % 10;
        let subnet = format!("10.{}.{}", 200 + seq % 50, std::process::id() % 250);
        let mut made = Hosts { bridge: format!("cbr{id}"), hosts: Vec::new() };
        run(&["ip", "link", "add", &made.bridge, "type", "bridge"])?;
        run(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &made.bridge])?;
        run(&["ip", "link", "set", &made.bridge, "up"])?;
        for (i, name) in names.iter().enumerate() {
            let host = Host { name: name.to_string(), ns: format!("cistern-{name}-{id}"), ip: format!("{subnet}.{}", 10 + i), port: format!("ch{id}x{i}") };
            let inside = format!("cn{id}x{i}");
            run(&["ip", "netns", "add", &host.ns])?;
            let (ns, port) = (host.ns.clone(), host.port.clone());
            made.hosts.push(host); // from here on, Drop removes it
            run(&["ip", "link", "add", &port, "type", "veth", "peer", "name", &inside])?;
            run(&["ip", "link", "set", &inside, "netns", &ns])?;
            run(&["ip", "link", "set", &port, "master", &made.bridge])?;
            run(&["ip", "link", "set", &port, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", &inside, "name", "eth0"])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{subnet}.{}/24", 10 + i), "dev", "eth0"])?;
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(made)
    }

    pub fn get(&self, name: &str) -> &Host {
        self.hosts.iter().find(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }
}

impl Host {
    /// `program args...` in this host's network namespace, with `NODE_NAME` set to the host's
    /// name, killed if the test process dies.
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/run/netns/{}", self.ns)).arg("--").arg(program).env("NODE_NAME", &self.name).stdin(Stdio::null());
        // SAFETY: prctl in the child before exec; no allocation. nsenter execs the program
        // in the same process, which keeps the setting.
        unsafe {
            c.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        c
    }

    /// Cuts (false) or restores (true) the host's cable: its port on the bridge goes down, so
    /// its peers see silence, not resets.
    pub fn link(&self, up: bool) {
        run(&["ip", "link", "set", &self.port, if up { "up" } else { "down" }]).unwrap();
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = run(&["ip", "netns", "del", &h.ns]);
            let _ = run(&["ip", "link", "del", &h.port]);
        }
        let _ = run(&["ip", "link", "del", &self.bridge]);
    }
}

/// A process that is SIGKILLed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}
