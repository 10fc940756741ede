//! The benchmarks' delay proxy as a process, for `bench/compare.sh --far`: every byte each way
//! held for a fixed time and then sent on, with no cap on throughput (tests/support/delay.rs,
//! the same proxy the Rust benchmarks run in a thread). Test infrastructure, not the product.
//!
//! `delay_proxy LISTEN UPSTREAM ONE_WAY_MS`: prints the address it listens on, then runs until
//! killed. Run it inside the server's network namespace (`ip netns exec`).

#[path = "../../../tests/support/delay.rs"]
#[allow(dead_code)] // the egress counter: the bench counts bytes in the kernel instead
mod delay;

use std::io::Write;
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, listen, upstream, ms] = &args[..] else {
        eprintln!("usage: delay_proxy LISTEN UPSTREAM ONE_WAY_MS");
        std::process::exit(2);
    };
    let Ok(ms) = ms.parse::<u64>() else {
        eprintln!("ONE_WAY_MS: {ms:?} is not a whole number of milliseconds");
        std::process::exit(2);
    };
    let proxy = delay::DelayProxy::start(None, listen, upstream, Duration::from_millis(ms));
    println!("{}", proxy.address);
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}
