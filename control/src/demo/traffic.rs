//! The demo's traffic, generated with sockets opened inside the client's
//! namespace (no external tools): HTTP through the ClusterIP and the
//! NodePort, HTTP and ping straight across nodes. Every exchange is bounded
//! by a timeout; a failure is reported, not retried forever.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use podswitch_dataplane::io::netns::run_in_netns;
use podswitch_dataplane::wire::checksum::checksum;
use socket2::{Domain, Protocol, Socket, Type};

/// How long one exchange may take.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(3);

/// Where a request came from and what it asked for.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The client, e.g. `pod-a1` or `external`.
    pub client: String,
    /// What was asked, e.g. `http://10.96.0.10:80 (ClusterIP)` or `ping 10.244.2.2`.
    pub target: String,
    /// The answer: the responding pod's `name address` for HTTP, the round
    /// trip for ping; or why there was none.
    pub outcome: Result<String, String>,
}

/// A client namespace.
#[derive(Debug, Clone)]
pub struct Client {
    /// Its name in the output.
    pub name: String,
    /// Its namespace file.
    pub netns: PathBuf,
}

/// `GET /` from `client` to `target`; the body on success.
pub fn http_get(client: &Client, target: SocketAddrV4, label: &str) -> Exchange {
    let outcome = run_in_netns(&client.netns, move || get(target))
        .map_err(|e| format!("cannot enter the client's namespace: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .and_then(|response| body_of(&response));
    Exchange {
        client: client.name.clone(),
        target: format!("http://{target}/ ({label})"),
        outcome,
    }
}

fn get(target: SocketAddrV4) -> std::io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&SocketAddr::V4(target), EXCHANGE_TIMEOUT)?;
    stream.set_read_timeout(Some(EXCHANGE_TIMEOUT))?;
    stream.set_write_timeout(Some(EXCHANGE_TIMEOUT))?;
    let request = format!("GET / HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.take(64 * 1024).read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

/// The body of a `200` response, trimmed; an error naming the status otherwise.
fn body_of(response: &str) -> Result<String, String> {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("answered {status:?}"));
    }
    Ok(body.trim().to_string())
}

/// One ICMP echo from `client` to `dst`; the round trip on success.
pub fn ping(client: &Client, dst: Ipv4Addr, label: &str) -> Exchange {
    let outcome = run_in_netns(&client.netns, move || echo(dst))
        .map_err(|e| format!("cannot enter the client's namespace: {e}"))
        .and_then(|r| r.map_err(|e| e.to_string()))
        .and_then(|rtt| rtt.ok_or_else(|| format!("no reply within {EXCHANGE_TIMEOUT:?}")))
        .map(|rtt| format!("reply in {:.2} ms", rtt.as_secs_f64() * 1000.0));
    Exchange {
        client: client.name.clone(),
        target: format!("ping {dst} ({label})"),
        outcome,
    }
}

fn echo(dst: Ipv4Addr) -> std::io::Result<Option<Duration>> {
    let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
    socket.set_read_timeout(Some(Duration::from_millis(100)))?;
    let ident = (std::process::id() as u16) ^ 0xd3e0;
    let mut request = [
        8,
        0,
        0,
        0, // echo request, checksum below
        (ident >> 8) as u8,
        ident as u8,
        0,
        1,
        b'p',
        b'o',
        b'd',
        b's',
        b'w',
        b'i',
        b't',
        b'c',
    ];
    let sum = checksum(&request);
    request[2..4].copy_from_slice(&sum.to_be_bytes());
    let start = Instant::now();
    socket.send_to(&request, &SocketAddr::V4(SocketAddrV4::new(dst, 0)).into())?;
    let mut buf = [0u8; 1500];
    while start.elapsed() < EXCHANGE_TIMEOUT {
        let Ok(n) = (&socket).read(&mut buf) else {
            continue;
        };
        if is_echo_reply(&buf[..n], dst, ident) {
            return Ok(Some(start.elapsed()));
        }
    }
    Ok(None)
}

/// True for an IPv4 packet from `src` carrying an echo reply with `ident`.
fn is_echo_reply(packet: &[u8], src: Ipv4Addr, ident: u16) -> bool {
    let header_len = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
    let from = packet.get(12..16) == Some(&src.octets()[..]);
    let icmp = packet.get(header_len..).unwrap_or_default();
    from && icmp.first() == Some(&0) && icmp.get(4..6) == Some(&ident.to_be_bytes()[..])
}

/// The namespace file of a named client, for callers outside the sandbox.
pub fn client(name: &str, netns: &Path) -> Client {
    Client {
        name: name.to_string(),
        netns: netns.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_of_takes_a_200_body_and_refuses_others() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 18\r\n\r\npod-a1 10.244.1.2\n";
        assert_eq!(body_of(ok).unwrap(), "pod-a1 10.244.1.2");
        let refused = "HTTP/1.1 503 Service Unavailable\r\n\r\n";
        assert!(body_of(refused).unwrap_err().contains("503"));
        assert!(body_of("garbage").is_err());
    }

    #[test]
    fn echo_reply_must_match_source_type_and_ident() {
        let src = Ipv4Addr::new(10, 244, 2, 2);
        let mut packet = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0];
        packet.extend_from_slice(&src.octets());
        packet.extend_from_slice(&[10, 244, 1, 2]);
        packet.extend_from_slice(&[0, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert!(is_echo_reply(&packet, src, 0x1234));
        assert!(!is_echo_reply(&packet, src, 0x1235));
        assert!(!is_echo_reply(
            &packet,
            Ipv4Addr::new(10, 244, 2, 3),
            0x1234
        ));
        packet[20] = 8;
        assert!(
            !is_echo_reply(&packet, src, 0x1234),
            "a request is not a reply"
        );
        assert!(!is_echo_reply(&packet[..22], src, 0x1234));
    }
}
