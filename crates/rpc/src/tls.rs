//! Mutual TLS on every TCP listener and connection between Cistern's components (rustls with
//! the ring provider, through tonic's `tls-ring`).
//!
//! Each Dataset has its own CA. Every component holds a certificate with one **role** in it:
//! its only subject alternative name is `<role>.cistern.internal` (master, worker, client).
//! - A client of a component verifies the chain to the Dataset's CA and that the peer's
//!   certificate carries the role it dialled (the name checked is the role, not the address:
//!   workers are dialled by pod IP, which no certificate made ahead of time can name).
//! - A server requires a client certificate from the same CA, and an RPC that only one role
//!   may make (a worker's heartbeat) checks the role with [`peer_role`].
//!
//! Unix sockets carry no TLS: they are protected by file permissions (0700 run directory,
//! root). A process without credentials can use Unix sockets only; a TCP address then fails
//! with an error that names the fix.

use rustls_pki_types::{CertificateDer, ServerName};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// What a certificate lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Master,
    Worker,
    /// The FUSE client, loaders and tools: may read, may not register as a worker.
    Client,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Master, Role::Worker, Role::Client];

    pub fn name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Worker => "worker",
            Role::Client => "client",
        }
    }

    /// The one name in this role's certificates, and the name a caller checks.
    pub fn dns_name(self) -> String {
        format!("{}.cistern.internal", self.name())
    }
}

/// A component's credentials: the Dataset's CA and its own certificate and key (PEM). The key
/// never prints.
#[derive(Clone)]
pub struct TlsCredentials {
    pub role: Role,
    ca: String,
    cert: String,
    key: String,
}

impl fmt::Debug for TlsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsCredentials({}, key <redacted>)", self.role.name())
    }
}

/// Where a role's files are in a credentials directory.
pub fn files(dir: &Path, role: Role) -> (PathBuf, PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join(format!("{}.pem", role.name())), dir.join(format!("{}.key", role.name())))
}

impl TlsCredentials {
    pub fn new(role: Role, ca: String, cert: String, key: String) -> TlsCredentials {
        TlsCredentials { role, ca, cert, key }
    }

    /// `role`'s credentials from `dir` (`ca.pem`, `<role>.pem`, `<role>.key`); `None` when the
    /// directory has no certificate for the role.
    pub fn load(dir: &Path, role: Role) -> Result<Option<TlsCredentials>, String> {
        let (ca, cert, key) = files(dir, role);
        if !cert.exists() {
            return Ok(None);
        }
        let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
        Ok(Some(TlsCredentials { role, ca: read(&ca)?, cert: read(&cert)?, key: read(&key)? }))
    }

    fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
            .timeout(std::time::Duration::from_secs(10))
    }

    pub fn client_config(&self, peer: Role) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
            .domain_name(peer.dns_name())
    }
}

static INSTALLED: OnceLock<TlsCredentials> = OnceLock::new();

/// Makes `creds` this process's credentials for every TCP listener and connection. Once per
/// process; later calls are ignored (and say so).
pub fn install(creds: TlsCredentials) {
    if INSTALLED.set(creds).is_err() {
        tracing::debug!("TLS credentials were installed already; keeping the first");
    }
}

pub fn installed() -> Option<&'static TlsCredentials> {
    INSTALLED.get()
}

/// Why a TCP address cannot be used.
pub fn missing() -> String {
    "TCP between Cistern's components needs mutual TLS: give the Dataset's credentials directory \
     (--credentials DIR or CISTERN_CREDENTIALS, with ca.pem and this component's certificate), \
     or use unix: addresses on one node"
        .to_string()
}

/// The client TLS configuration for dialling a component of role `peer` over TCP.
pub fn client_config(peer: Role) -> Result<ClientTlsConfig, String> {
    installed().map(|c| c.client_config(peer)).ok_or_else(missing)
}

/// The server TLS configuration for a TCP listener.
pub fn server_config() -> Result<ServerTlsConfig, String> {
    installed().map(TlsCredentials::server_config).ok_or_else(missing)
}

/// Who called, as far as the transport can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Over a Unix socket: trusted by its file permissions.
    Local,
    /// Over mutual TLS, with this role in its certificate.
    Authenticated(Role),
    /// Over TCP with no certificate of a known role (cannot happen behind a TLS listener,
    /// which refuses such peers at the handshake; kept so a check never assumes).
    Unknown,
}

/// The caller of `request`: its role from its (already chain-verified) certificate.
pub fn peer_role<T>(request: &tonic::Request<T>) -> Peer {
    let Some(certs) = request.peer_certs() else {
        // No TLS: a Unix socket (TCP listeners are always TLS; see `crate::address`).
        return if request.remote_addr().is_some() { Peer::Unknown } else { Peer::Local };
    };
    let Some(leaf) = certs.first() else { return Peer::Unknown };
    role_of(leaf).map_or(Peer::Unknown, Peer::Authenticated)
}

/// The role a certificate names, if exactly one.
pub fn role_of(cert: &CertificateDer<'_>) -> Option<Role> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let mut roles = Role::ALL.into_iter().filter(|r| {
        let name = ServerName::try_from(r.dns_name()).expect("a valid DNS name");
        ee.verify_is_valid_for_subject_name(&name).is_ok()
    });
    let first = roles.next()?;
    roles.next().is_none().then_some(first)
}

/// The Dataset's certificate authority: its certificate and key (PEM). `cistern up` and the
/// operator make one per Dataset and issue every component's certificate with it.
#[derive(Clone)]
pub struct Authority {
    pub cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Authority(key <redacted>)")
    }
}

/// How long issued certificates are valid; they are issued anew well before (see the README's
/// security section on rotation).
pub const VALIDITY_DAYS: i64 = 365;

fn validity(params: &mut rcgen::CertificateParams) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let day = |secs: u64| {
        let days = (secs / 86_400) as i64;
        // Civil date from days since the epoch (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let y = (yoe + era * 400 + if m <= 2 { 1 } else { 0 }) as i32;
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = day(now.saturating_sub(86_400));
    params.not_after = day(now + VALIDITY_DAYS as u64 * 86_400);
}

fn ca_params() -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.distinguished_name.push(rcgen::DnType::CommonName, "Cistern Dataset CA");
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
    p
}

impl Authority {
    /// A new CA with a fresh key.
    pub fn generate() -> Result<Authority, String> {
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let mut params = ca_params();
        validity(&mut params);
        params.not_after = rcgen::date_time_ymd(2100, 1, 1);
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Authority { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    pub fn from_pem(cert_pem: String, key_pem: String) -> Authority {
        Authority { cert_pem, key_pem }
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A certificate and key (PEM) for `roles` (one, except in tests that run every role in
    /// one process).
    pub fn issue(&self, roles: &[Role]) -> Result<(String, String), String> {
        let ca_key = rcgen::KeyPair::from_pem(&self.key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let issuer = rcgen::Issuer::new(ca_params(), ca_key);
        let mut params = rcgen::CertificateParams::new(roles.iter().map(|r| r.dns_name()).collect::<Vec<_>>()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, roles.iter().map(|r| r.name()).collect::<Vec<_>>().join("+"));
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        validity(&mut params);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A server certificate and key (PEM) for host names and IP addresses (the admission
    /// webhook's Service names, or 127.0.0.1), issued by this CA.
    pub fn issue_server(&self, hosts: &[String]) -> Result<(String, String), String> {
        let ca_key = rcgen::KeyPair::from_pem(&self.key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let issuer = rcgen::Issuer::new(ca_params(), ca_key);
        let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(|e| e.to_string())?;
        params.distinguished_name.push(rcgen::DnType::CommonName, hosts.first().cloned().unwrap_or_default());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.signed_by(&key, &issuer).map_err(|e| e.to_string())?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Credentials for `roles`, issued by this CA.
    pub fn credentials(&self, role: Role, roles: &[Role]) -> Result<TlsCredentials, String> {
        let (cert, key) = self.issue(roles)?;
        Ok(TlsCredentials::new(role, self.cert_pem.clone(), cert, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(pem: &str) -> CertificateDer<'static> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        CertificateDer::from(base64::engine::general_purpose::STANDARD.decode(b64).unwrap())
    }

    #[test]
    fn each_certificate_names_exactly_its_role() {
        let ca = Authority::generate().unwrap();
        for role in Role::ALL {
            let (cert, _) = ca.issue(&[role]).unwrap();
            assert_eq!(role_of(&der(&cert)), Some(role));
        }
        let (all, _) = ca.issue(&Role::ALL).unwrap();
        assert_eq!(role_of(&der(&all)), None, "a certificate of several roles has none to check against");
        assert!(format!("{ca:?}").contains("redacted"));
    }
}
