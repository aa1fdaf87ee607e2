//! `kube_sim serve`: runs the simulator until standard input closes or SIGTERM, so a
//! parent (an Elixir port, a shell script) owns its lifetime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{fixtures, Config, Simulator};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: kube_sim serve [--listen ADDR] [--control ADDR] [--dir DIR] [--pods N] \
[--namespace NS] [--san NAME_OR_IP]... [--history N] [--bookmark-ms MS] [--netns NAME]
       kube_sim certs --dir DIR --san NAME...
       kube_sim manifest FILE...

Starts the Kubernetes API simulator. Prints one JSON line with its URL, control URL and the
files it wrote to DIR (ca.crt, token, admin-token, kubeconfig for the admin, kubeconfig-sa,
serviceaccount/), then serves until standard input closes or it is sent SIGTERM. With --netns,
the API listens inside that network namespace (the control port stays here).

`certs` writes a fresh CA (ca.pem) and, for each --san, NAME.pem and NAME-key.pem signed by it.

`manifest` checks Kubernetes manifests strictly (known kinds, no unknown field) and prints
JSON: every object, and the pods each Deployment's ReplicaSet would create.";

struct Args {
    config: Config,
    netns: Option<String>,
    dir: Option<PathBuf>,
    pods: usize,
    namespace: String,
}

/// Parses the options of `serve`.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        config: Config {
            control: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Config::default()
        },
        netns: None,
        dir: None,
        pods: 0,
        namespace: "default".into(),
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"));
        let bad = |e: &dyn std::fmt::Display| format!("bad value for {flag}: {e}");
        match flag.as_str() {
            "--listen" => parsed.config.listen = value()?.parse().map_err(|e| bad(&e))?,
            "--control" => parsed.config.control = Some(value()?.parse().map_err(|e| bad(&e))?),
            "--dir" => parsed.dir = Some(value()?.into()),
            "--netns" => parsed.netns = Some(value()?),
            "--pods" => parsed.pods = value()?.parse().map_err(|e| bad(&e))?,
            "--namespace" => parsed.namespace = value()?,
            "--san" => parsed.config.extra_sans.push(value()?),
            "--history" => parsed.config.history_limit = value()?.parse().map_err(|e| bad(&e))?,
            "--bookmark-ms" => {
                parsed.config.bookmark_interval = Duration::from_millis(value()?.parse().map_err(|e| bad(&e))?)
            }
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown option {other}\n\n{USAGE}")),
        }
    }
    Ok(parsed)
}

/// `kube_sim certs`: a CA and leaf certificates, e.g. for TLS distribution tests.
fn certs(mut args: impl Iterator<Item = String>) -> Result<(), String> {
    let (mut dir, mut sans) = (None, Vec::new());
    while let Some(flag) = args.next() {
        match (flag.as_str(), args.next()) {
            ("--dir", Some(d)) => dir = Some(PathBuf::from(d)),
            ("--san", Some(s)) => sans.push(s),
            _ => return Err(USAGE.into()),
        }
    }
    let dir = dir.ok_or(USAGE)?;
    let ca = kube_sim::tls::CertAuthority::new("kube-sim-test-ca").map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let write = |name: String, contents: &str| std::fs::write(dir.join(name), contents).map_err(|e| e.to_string());
    write("ca.pem".into(), ca.cert_pem())?;
    for san in sans {
        let cert = ca.issue(std::slice::from_ref(&san)).map_err(|e| e.to_string())?;
        write(format!("{san}.pem"), &cert.cert_pem)?;
        write(format!("{san}-key.pem"), &cert.key_pem)?;
    }
    Ok(())
}

/// `kube_sim manifest FILE...`: the checked objects and the pods they make, as JSON.
fn manifest(files: impl Iterator<Item = String>) -> Result<(), String> {
    let mut yaml = String::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("{file}: {e}"))?;
        yaml.push_str(&text);
        yaml.push_str("\n---\n");
    }
    let checked = kube_sim::manifest::check(&yaml)?;
    println!("{}", serde_json::to_string(&checked).map_err(|e| e.to_string())?);
    Ok(())
}

fn main() {
    let mut args = std::env::args().skip(1);
    let outcome = match args.next().as_deref() {
        Some("serve") => parse(args).and_then(|args| {
            let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            runtime.block_on(run(args)).map_err(|e| format!("kube_sim: {e}"))
        }),
        Some("certs") => certs(args),
        Some("manifest") => manifest(args),
        _ => Err(USAGE.into()),
    };
    if let Err(message) = outcome {
        eprintln!("{message}");
        std::process::exit(2);
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let sim = match &args.netns {
        Some(netns) => Simulator::start_on(kube_sim::netns::bind(netns, args.config.listen)?, args.config).await?,
        None => Simulator::start(args.config).await?,
    };
    for i in 0..args.pods {
        // Loopback addresses: seeded pods are data only, and anything that tries to
        // reach one stays on this machine.
        let n = i + 1;
        let ip = format!("127.{}.{}.{}", 1 + n / 65536, (n / 256) % 256, n % 256);
        let pod = fixtures::with_labels(fixtures::ready_pod(&format!("pod-{i}"), &ip), &[("app", "seeded")]);
        sim.create_pod(&args.namespace, pod).map_err(std::io::Error::other)?;
    }
    let mut files = serde_json::Map::new();
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.crt"), sim.ca_pem())?;
        std::fs::write(dir.join("token"), sim.token())?;
        std::fs::write(dir.join("admin-token"), sim.admin_token())?;
        sim.write_kubeconfig(&dir.join("kubeconfig"), true)?;
        sim.write_kubeconfig(&dir.join("kubeconfig-sa"), false)?;
        sim.write_service_account(&dir.join("serviceaccount"))?;
        files.insert("dir".into(), dir.display().to_string().into());
    }
    let ready = serde_json::json!({
        "url": sim.url(),
        "control": sim.control_url(),
        "files": files,
        "pods": args.pods,
    });
    println!("{ready}");

    let mut stdin = tokio::io::stdin();
    let mut sink = [0u8; 256];
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            read = stdin.read(&mut sink) => if matches!(read, Ok(0) | Err(_)) { break },
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    Ok(())
}
