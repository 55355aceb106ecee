//! Loopback ports: pick a free one, wait until a listener accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago. Taken below the
/// kernel's ephemeral range (32768 and up here), so that no outgoing
/// connection of a concurrent test can be given it between our check and
/// the daemon's bind; each test process walks its own sequence (seeded by
/// its pid), so two suites running at once rarely try the same port.
/// Callers must still retry if something else grabs it before they bind.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 10_000;
    const SPAN: u32 = 22_000; // 10000..32000
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// The loopback address of `port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// True if a TCP connection to 127.0.0.1:`port` succeeds right now.
pub fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&addr(port), Duration::from_millis(250)).is_ok()
}

/// Polls until `port` accepts or `deadline` passes; `alive` is consulted
/// between attempts and stops the wait early when it returns false.
pub fn wait_accepts(port: u16, deadline: Instant, mut alive: impl FnMut() -> bool) -> bool {
    loop {
        if !alive() {
            return false;
        }
        if accepts(port) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
