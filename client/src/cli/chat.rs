//! The chat side of a session: stdin read on its own task (it outlives connections, so
//! what is typed while reconnecting is sent once paired again), and stdout written and
//! flushed as bytes arrive.

use sosq::ClientError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The stdin side of the chat, which outlives connections.
pub struct Chat {
    pub stdin: mpsc::Receiver<Vec<u8>>,
    pub stdin_done: bool,
    /// With forwarding, the session goes on after both chat directions are done.
    pub keep_open: bool,
}

impl Chat {
    /// A chat whose stdin is read from now on.
    pub fn new(keep_open: bool) -> Chat {
        Chat {
            stdin: spawn_stdin_reader(),
            stdin_done: false,
            keep_open,
        }
    }
}

/// Writes `bytes` to stdout at once (a person is reading).
pub async fn write_stdout(stdout: &mut tokio::io::Stdout, bytes: &[u8]) -> Result<(), ClientError> {
    let failed = |e: std::io::Error| ClientError::Local(format!("cannot write to stdout: {e}"));
    stdout.write_all(bytes).await.map_err(failed)?;
    stdout.flush().await.map_err(failed)
}

/// Reads stdin on its own task so a session can wait on it alongside the network;
/// the channel closes at EOF.
fn spawn_stdin_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    rx
}
