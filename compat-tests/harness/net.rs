//! Loopback ports: pick a free one, wait until a listener accepts.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A port on 127.0.0.1 that was free a moment ago (bind :0, read, close).
/// Callers must retry if something else grabs it before they bind.
pub fn free_port() -> u16 {
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
