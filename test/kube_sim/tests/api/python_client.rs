//! The official Kubernetes Python client (Debian's `python3-kubernetes`) against the
//! simulator: a third real client beside kubectl and kube-rs, written by other people,
//! so the simulator's reading of requests (boolean spellings, patch types, delete
//! options, continue tokens) is checked against one more independent implementation.
//! The checks themselves are in `tests/python/client_check.py`.

use std::path::Path;
use std::time::Duration;

use kube_sim::{Config, Simulator};
use tokio::process::Command;

/// Debian's interpreter: `apt-get install python3-kubernetes` installs for it, not for
/// a `python3` that may come first on PATH.
const PYTHON: &str = "/usr/bin/python3";

#[tokio::test]
async fn python_client_lists_pages_patches_deletes_and_watches() {
    let probe = std::process::Command::new(PYTHON)
        .args(["-c", "import kubernetes"])
        .output();
    match probe {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "the Kubernetes Python client is missing: run `apt-get install -y python3-kubernetes` \
             (it must be importable by {PYTHON}): {other:?}"
        ),
    }

    let config = Config {
        // Short, so the watch check sees bookmarks within a few seconds.
        bookmark_interval: Duration::from_millis(200),
        ..Config::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig, true).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/client_check.py");

    let run = Command::new(PYTHON)
        .arg(&script)
        .arg(&kubeconfig)
        .env("HOME", dir.path())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the Python checks finish within 2 minutes")
        .expect("python runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "the Python client's checks failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("all 8 checks passed"), "{stdout}\n{stderr}");
    println!("{stdout}");
}
