//! `kube_sim serve`: runs the simulator until standard input closes or SIGTERM, so a
//! parent (an Elixir port, a shell script) owns its lifetime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use kube_sim::{fixtures, Config, Simulator};
use tokio::io::AsyncReadExt;

const USAGE: &str = "usage: kube_sim serve [--listen ADDR] [--control ADDR] [--dir DIR] [--pods N] \
[--namespace NS] [--san NAME_OR_IP]... [--history N] [--bookmark-ms MS]

Starts the Kubernetes API simulator. Prints one JSON line with its URL, control URL and the
files it wrote to DIR (ca.crt, token, admin-token, kubeconfig for the admin, kubeconfig-sa,
serviceaccount/), then serves until standard input closes or it is sent SIGTERM.";

struct Args {
    config: Config,
    dir: Option<PathBuf>,
    pods: usize,
    namespace: String,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    if args.next().as_deref() != Some("serve") {
        return Err(USAGE.into());
    }
    let mut parsed = Args {
        config: Config {
            control: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            ..Config::default()
        },
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

#[tokio::main]
async fn main() {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("kube_sim: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> std::io::Result<()> {
    let sim = Simulator::start(args.config).await?;
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
