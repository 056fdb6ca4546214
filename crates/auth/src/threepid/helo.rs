//! The plain SMTP dialogue for servers that do not know `EHLO`: RFC 5321 (section 3.2) asks a
//! client refused at `EHLO` to fall back to `HELO`, which `lettre` does not do. Without
//! `EHLO` there are no extensions (no `STARTTLS`, no `AUTH`), so this is only tried where the
//! configuration allows a plain connection.

use std::time::Duration;

use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::TcpStream,
};

/// How long the whole dialogue may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Delivers `message` (a formatted mail) from `from` to `to` over plain SMTP with `HELO`.
pub async fn send(host: &str, port: u16, hello: &str, from: &str, to: &str, message: &[u8]) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, dialogue(host, port, hello, from, to, message))
        .await
        .map_err(|_| "the SMTP server took too long".to_owned())?
}

async fn dialogue(host: &str, port: u16, hello: &str, from: &str, to: &str, message: &[u8]) -> Result<(), String> {
    let stream = TcpStream::connect((host, port)).await.map_err(|e| e.to_string())?;
    let mut stream = BufReader::new(stream);
    expect(&mut stream, 220).await?;
    for (command, wanted) in
        [(format!("HELO {hello}"), 250), (format!("MAIL FROM:<{from}>"), 250), (format!("RCPT TO:<{to}>"), 250)]
    {
        command_line(&mut stream, &command).await?;
        expect(&mut stream, wanted).await?;
    }
    command_line(&mut stream, "DATA").await?;
    expect(&mut stream, 354).await?;
    stream.get_mut().write_all(&dot_stuffed(message)).await.map_err(|e| e.to_string())?;
    stream.get_mut().write_all(b".\r\n").await.map_err(|e| e.to_string())?;
    expect(&mut stream, 250).await?;
    // The mail is accepted; how the server answers QUIT no longer matters.
    let _ = command_line(&mut stream, "QUIT").await;
    Ok(())
}

async fn command_line(stream: &mut BufReader<TcpStream>, command: &str) -> Result<(), String> {
    stream.get_mut().write_all(format!("{command}\r\n").as_bytes()).await.map_err(|e| e.to_string())
}

/// Reads one reply (its continuation lines too); an error unless its code is `wanted`.
async fn expect(stream: &mut BufReader<TcpStream>, wanted: u16) -> Result<(), String> {
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await.map_err(|e| e.to_string())? == 0 {
            return Err("the SMTP server closed the connection".into());
        }
        let code: u16 = line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| format!("bad reply {line:?}"))?;
        if line.as_bytes().get(3) == Some(&b'-') {
            continue;
        }
        return match code == wanted {
            true => Ok(()),
            false => Err(format!("the SMTP server answered {}", line.trim_end())),
        };
    }
}

/// The message with CRLF line ends, every line starting with `.` doubled, ending in CRLF.
fn dot_stuffed(message: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(message);
    let mut out = Vec::with_capacity(message.len() + 16);
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.starts_with('.') {
            out.push(b'.');
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_starting_with_a_dot_are_doubled() {
        assert_eq!(dot_stuffed(b"a\r\n.b\nc"), b"a\r\n..b\r\nc\r\n");
    }
}
