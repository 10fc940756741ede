//! A far object store for benchmarks: the S3 server in a network namespace of its own, reached
//! over a veth pair on which every connection is limited to a rate.
//!
//! This is how object stores behave: each connection gets a bounded share (AWS documents about
//! 85-90 MB/s per connection to S3 and advises parallel connections to go faster). On
//! 127.0.0.1 nothing limits a single GET but the CPU that the server, the reader and the cache
//! share, which says nothing of what parallel range fetches are for.
//!
//! The limit: on the server's side of the link, an HTB class per hash bucket of the client's
//! port (256 buckets, so concurrent connections of one client land in distinct classes), each
//! at the rate. Needs root and `ip`/`tc` (iproute2).

use std::process::Command;

pub struct FarLink {
    pub ns: String,
    pub server_ip: String,
    near: String,
}

/// Runs a command to completion; its stderr in the error.
pub fn run(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`{}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl FarLink {
    /// A namespace and link with every connection from the server limited to `mib_per_s`.
    pub fn up(mib_per_s: u64) -> Result<FarLink, String> {
        let id = std::process::id();
        let subnet = format!("10.250.{}", id % 250);
        let link = FarLink { ns: format!("cistern-far-{id}"), server_ip: format!("{subnet}.2"), near: format!("cfar{}n", id % 100_000) };
        let far = format!("cfar{}f", id % 100_000);
        run(&["ip", "netns", "add", &link.ns])?;
        // From here on, Drop removes what was made.
        run(&["ip", "link", "add", &link.near, "type", "veth", "peer", "name", &far])?;
        run(&["ip", "link", "set", &far, "netns", &link.ns])?;
        run(&["ip", "addr", "add", &format!("{subnet}.1/24"), "dev", &link.near])?;
        run(&["ip", "link", "set", &link.near, "up"])?;
        let in_ns = |args: &[&str]| -> Result<(), String> {
            let mut all = vec!["ip", "netns", "exec", &link.ns];
            all.extend_from_slice(args);
            run(&all)
        };
        in_ns(&["ip", "addr", "add", &format!("{}/24", link.server_ip), "dev", &far])?;
        in_ns(&["ip", "link", "set", &far, "up"])?;
        in_ns(&["ip", "link", "set", "lo", "up"])?;
        limit_each_connection(&link.ns, &far, mib_per_s)?;
        Ok(link)
    }
}

/// Limits every connection leaving `dev` of namespace `ns` to `mib_per_s`: an HTB class per
/// hash bucket of the peer's port (256 buckets, so concurrent connections of one client land in
/// distinct classes), each at the rate.
pub fn limit_each_connection(ns: &str, dev: &str, mib_per_s: u64) -> Result<(), String> {
    let rate = format!("{}kbit", mib_per_s * 1024 * 1024 * 8 / 1000);
    let mut batch = format!("qdisc add dev {dev} root handle 1: htb default 1\nclass add dev {dev} parent 1: classid 1:1 htb rate 100gbit quantum 60000\n");
    for i in 0..256 {
        batch += &format!("class add dev {dev} parent 1: classid 1:{:x} htb rate {rate} ceil {rate} burst 256k quantum 60000\n", i + 256);
    }
    batch += &format!("filter add dev {dev} parent 1: prio 1 handle 2: protocol ip u32 divisor 256\n");
    // The 32-bit word at byte 20 of a TCP/IP packet holds both ports; its low byte is the
    // low byte of the client's port.
    batch += &format!("filter add dev {dev} parent 1: prio 1 protocol ip u32 ht 800:: match ip protocol 6 0xff hashkey mask 0x000000ff at 20 link 2:\n");
    for i in 0..256 {
        batch += &format!("filter add dev {dev} parent 1: prio 1 protocol ip u32 ht 2:{i:x}: match u32 0 0 flowid 1:{:x}\n", i + 256);
    }
    let file = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    std::fs::write(file.path(), batch).map_err(|e| e.to_string())?;
    run(&["ip", "netns", "exec", ns, "tc", "-batch", file.path().to_str().unwrap()])
}

impl Drop for FarLink {
    fn drop(&mut self) {
        // Deleting the namespace takes the far end of the pair, and with it the near end.
        let _ = run(&["ip", "netns", "del", &self.ns]);
        let _ = run(&["ip", "link", "del", &self.near]);
    }
}
