//! `materializer healthcheck`: asks a running `serve` for `/healthz`, so that a
//! container image needs no HTTP client for its health check.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::cli::args::HealthcheckArgs;
use crate::cli::error::CliError;

/// Succeeds when `GET /healthz` on the listen address answers 200.
pub(crate) async fn healthcheck(args: &HealthcheckArgs) -> Result<(), CliError> {
    let address = probe_address(&args.listen);
    let url = format!("http://{address}/healthz");
    let wait = Duration::from_secs(args.timeout.max(1));
    let status = tokio::time::timeout(wait, status_line(&address))
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {} s", wait.as_secs()),
            ))
        })
        .map_err(|source| CliError::HealthProbe {
            url: url.clone(),
            source,
        })?;
    if status.split(' ').nth(1) != Some("200") {
        return Err(CliError::Unhealthy { url, status });
    }
    println!("{url}: {status}");
    Ok(())
}

/// Where to ask: the listen address, with "all interfaces" (0.0.0.0, [::])
/// asked on loopback.
fn probe_address(listen: &str) -> String {
    match listen.parse::<SocketAddr>() {
        Ok(address) if address.ip().is_unspecified() => {
            let loopback = match address {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(loopback, address.port()).to_string()
        }
        _ => listen.to_string(),
    }
}

/// The first line of the answer to `GET /healthz`: `HTTP/1.1 200 OK`.
async fn status_line(address: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address).await?;
    let request = format!("GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream)
        .take(1024)
        .read_line(&mut line)
        .await?;
    Ok(line.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::probe_address;

    #[test]
    fn all_interfaces_are_asked_on_loopback() {
        assert_eq!(probe_address("0.0.0.0:8000"), "127.0.0.1:8000");
        assert_eq!(probe_address("[::]:8000"), "[::1]:8000");
        assert_eq!(probe_address("10.1.2.3:8000"), "10.1.2.3:8000");
        assert_eq!(probe_address("localhost:8000"), "localhost:8000");
    }
}
