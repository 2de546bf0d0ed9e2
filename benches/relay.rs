//! Baseline for `scripts/bench.sh` (not a criterion bench): the cheapest possible proxy, a tokio
//! TCP relay that copies bytes both ways between each client and one backend
//! (`tokio::io::copy_bidirectional`), on the same runtime rwsplit uses (multi-thread, one worker per
//! CPU). Its CPU time per query is the floor that the kernel's extra hop (two more `recv` and two more
//! `send` per query on loopback) and the runtime's wake-ups put under any user-space proxy; rwsplit's
//! own work is what it spends above that.
//!
//! `cargo bench` runs every bench target, so without `RELAY_LISTEN` this prints how to use it and
//! exits. `RELAY_LISTEN=127.0.0.1:PORT RELAY_BACKEND=127.0.0.1:13306 cargo bench --bench relay` runs it
//! until killed; it prints `listening` once it accepts connections.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};

async fn serve(listen: SocketAddr, backend: SocketAddr) -> Result<()> {
    let listener = TcpListener::bind(listen).await.with_context(|| format!("bind {listen}"))?;
    println!("listening");
    loop {
        let (mut client, _) = listener.accept().await?;
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(backend).await else { return };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

fn main() -> Result<()> {
    let Ok(listen) = std::env::var("RELAY_LISTEN") else {
        println!("relay: baseline TCP relay for scripts/bench.sh; set RELAY_LISTEN and RELAY_BACKEND to run");
        return Ok(());
    };
    let listen: SocketAddr = listen.parse().context("RELAY_LISTEN")?;
    let backend: SocketAddr = std::env::var("RELAY_BACKEND").context("RELAY_BACKEND")?.parse()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(serve(listen, backend))
}
