//! Binding a listener inside a Linux network namespace, so tests can put the API
//! server where their simulated pods (namespaces of their own) can reach it, while
//! the control port stays on this machine's loopback.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

/// Binds `addr` inside the network namespace `name` (as created by `ip netns add`).
///
/// The switch happens on a short-lived thread: a socket keeps the namespace it was
/// created in, and no other thread of this process changes namespace.
pub fn bind(name: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    let path = format!("/var/run/netns/{name}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let namespace = std::fs::File::open(&path)?;
                // SAFETY: setns only changes this thread's network namespace; the file
                // descriptor is valid for the duration of the call.
                if unsafe { libc::setns(namespace.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return Err(io::Error::last_os_error());
                }
                TcpListener::bind(addr)
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("netns bind thread panicked")))
    })
}
