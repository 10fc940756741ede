//! The master and a worker as real processes on TCP (127.0.0.1), as on Kubernetes: mutual TLS
//! with the Dataset's certificates on every connection. A peer without a certificate, or with
//! another Dataset's, is refused at the handshake; a client's certificate cannot register a
//! worker; the worker's can; and a loader with the client's certificate reads through both.

mod support;

use cistern_rpc::pb;
use cistern_rpc::pb::master_client::MasterClient;
use cistern_rpc::tls::{Authority, Role, TlsCredentials};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::*;

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn master_over(addr: &str, tls: Option<tonic::transport::ClientTlsConfig>) -> Result<MasterClient<tonic::transport::Channel>, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut e = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}")).unwrap().connect_timeout(Duration::from_secs(2)).timeout(Duration::from_secs(5));
    if let Some(t) = tls {
        e = e.tls_config(t).unwrap();
    }
    e.connect().await.map(MasterClient::new).map_err(|e| format!("{e:?}"))
}

fn report(address: &str) -> pb::WorkerReport {
    pb::WorkerReport { id: 7, address: address.into(), figures: None, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_datasets_certificates_get_in_and_only_a_worker_registers_a_worker() {
    let s = Scratch::new();
    std::fs::create_dir_all(s.path("data/train")).unwrap();
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(s.path("data/train/model.bin"), &content).unwrap();
    let yaml = dataset_yaml("tls", &format!("local://{}", s.path("data").display()), "", &s.path("cache"), "256Mi", 1);
    let file = s.write("tls.yaml", &yaml);
    let run_dir = s.path("run/tls");
    let port = free_port();
    let master_addr = format!("127.0.0.1:{port}");
    let spawn = |args: &[&str]| {
        let log = std::fs::File::create(s.path(&format!("{}.log", args[0]))).unwrap();
        Killed(Command::new(cistern_bin()).args(args).arg("-f").arg(&file).arg("--run-dir").arg(&run_dir).env("CISTERN_LOG", "info").stdout(Stdio::null()).stderr(log).spawn().unwrap())
    };
    let _master = spawn(&["master", "--listen", &master_addr, "--web-addr", "127.0.0.1:0"]);
    let creds = run_dir.join("credentials");
    eventually(20, "the master's credentials", || creds.join("ca.pem").exists().then_some(()));
    let _worker = spawn(&["worker", "--listen", "127.0.0.1:0", "--master", &master_addr]);

    let client = TlsCredentials::load(&creds, Role::Client).unwrap().unwrap();
    let worker = TlsCredentials::load(&creds, Role::Worker).unwrap().unwrap();
    let mut as_client = None;
    for _ in 0..100 {
        if let Ok(c) = master_over(&master_addr, Some(client.client_config(Role::Master))).await {
            as_client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut as_client = as_client.expect("the master answers a client with the Dataset's certificate");

    // The real worker registered itself over mutual TLS.
    let mut cluster = None;
    for _ in 0..100 {
        let c = as_client.cluster(pb::ClusterRequest::default()).await.unwrap().into_inner();
        if !c.workers.is_empty() {
            cluster = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cluster = cluster.expect("the worker registered");
    assert!(cluster.workers[0].address.contains("127.0.0.1:"), "{cluster:?}");

    // No certificate: refused at the handshake (plain HTTP/2 on a TLS port gets nowhere).
    let plain = master_over(&master_addr, None).await;
    let refused = match plain {
        Err(_) => true,
        Ok(mut c) => c.heartbeat(report("127.0.0.1:1")).await.is_err(),
    };
    assert!(refused, "a peer without a certificate was let in");
    // TLS, but without a client certificate: the server requires one.
    let no_identity = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(creds.join("ca.pem")).unwrap()))
        .domain_name(Role::Master.dns_name());
    let anonymous = match master_over(&master_addr, Some(no_identity)).await {
        Err(_) => true,
        Ok(mut c) => c.heartbeat(report("127.0.0.1:1")).await.is_err(),
    };
    assert!(anonymous, "a TLS peer without a client certificate was let in");
    // Another Dataset's CA: refused both ways.
    let other = Authority::generate().unwrap().credentials(Role::Worker, &[Role::Worker]).unwrap();
    let foreign = match master_over(&master_addr, Some(other.client_config(Role::Master))).await {
        Err(_) => true,
        Ok(mut c) => c.heartbeat(report("127.0.0.1:1")).await.is_err(),
    };
    assert!(foreign, "another Dataset's certificate was let in");

    // The client's certificate reads but cannot register a worker: a final PERMISSION_DENIED.
    let e = as_client.heartbeat(report("127.0.0.1:1")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(cistern_rpc::errno_of(&e), Some(cistern_rpc::Errno::PermissionDenied));
    // A worker's certificate may; and it must name a TCP address, not a path on clients' nodes.
    let mut as_worker = master_over(&master_addr, Some(worker.client_config(Role::Master))).await.unwrap();
    let e = as_worker.heartbeat(report("unix:/run/victim.sock")).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    as_worker.heartbeat(report("127.0.0.1:1")).await.expect("a worker's certificate registers");

    // A loader with the client's certificate reads everything through the master and worker.
    let o = Command::new(cistern_bin())
        .args(["load", "--master", &master_addr, "--master-timeout-secs", "20", "--credentials"])
        .arg(&creds)
        .arg("/train")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr_of(&o));
    // Without credentials a TCP master is refused before any byte is sent, with the fix named.
    let o = Command::new(cistern_bin()).args(["load", "--master", &master_addr, "--master-timeout-secs", "2", "/train"]).env_remove("CISTERN_CREDENTIALS").output().unwrap();
    assert!(!o.status.success() && stderr_of(&o).contains("needs mutual TLS"), "{}", stderr_of(&o));
}
