//! The FUSE layer: the Dataset as a read-only file system ([`fs::CisternFs`]) and the mount
//! that serves it ([`mount::FuseMount`]), on fuse-backend-rs (chosen because it can adopt a
//! live `/dev/fuse` connection, which crash-proof restarts need; see the README).

pub mod fs;
pub mod init;
pub mod mount;
pub mod passthrough;

pub use fs::CisternFs;
pub use mount::{FuseMount, MountHolder};
pub use passthrough::Passthrough;
