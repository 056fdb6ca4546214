//! Sending validation mails through the configured SMTP server (lettre, TLS by rustls).

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Body, Mailbox,
        header::{ContentTransferEncoding, ContentType},
    },
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use trellis_core::{
    Error, Result,
    config::{EmailConfig, SmtpTls},
};

/// The body as 7-bit text when it is (lines up to 998 characters are allowed), so the link
/// stays whole in the mail's source; quoted-printable otherwise.
fn plain_body(body: String) -> Body {
    let seven_bit = body.bytes().all(|b| b.is_ascii() && b != 0 && b != b'\r') && body.lines().all(|l| l.len() <= 998);
    match seven_bit {
        true => Body::dangerous_pre_encoded(body.replace('\n', "\r\n").into_bytes(), ContentTransferEncoding::SevenBit),
        false => Body::new(body),
    }
}

/// The SMTP connection settings and the sender address, checked once at start.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// Host and port, when the settings allow a plain `HELO` dialogue (`helo.rs`).
    plain: Option<(String, u16)>,
}

impl Mailer {
    /// A mailer for `[email]`; an error names what is wrong with the settings.
    pub fn new(config: &EmailConfig) -> std::result::Result<Mailer, String> {
        let host = config.smtp_host.as_deref().ok_or("email.smtp_host is not set")?;
        let tls = |host: &str| TlsParameters::new(host.to_owned()).map_err(|e| format!("email TLS settings: {e}"));
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let builder = match config.smtp_tls {
            SmtpTls::None => builder.tls(Tls::None),
            SmtpTls::Opportunistic => builder.tls(Tls::Opportunistic(tls(host)?)),
            SmtpTls::Starttls => builder.tls(Tls::Required(tls(host)?)),
            SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(host)?)),
        };
        let mut builder = builder.port(config.smtp_port);
        if let Some(user) = &config.smtp_user {
            builder = builder.credentials(Credentials::new(user.clone(), config.smtp_pass.clone().unwrap_or_default()));
        }
        let from = config.notif_from.parse().map_err(|e| format!("email.notif_from {:?}: {e}", config.notif_from))?;
        let plain = matches!(config.smtp_tls, SmtpTls::None | SmtpTls::Opportunistic)
            .then(|| (host.to_owned(), config.smtp_port))
            .filter(|_| config.smtp_user.is_none());
        Ok(Mailer { transport: builder.build(), from, plain })
    }

    /// Sends a plain-text mail to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        let to: Mailbox = to.parse().map_err(|_| Error::invalid_param("Unable to parse email address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(plain_body(body))
            .map_err(|e| Error::internal(format!("building a mail: {e}")))?;
        let refused = match self.transport.send(message.clone()).await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        // 500/502: a command the server does not know — `EHLO` on an old server.
        let unknown_command = refused.status().is_some_and(|c| matches!(c.to_string().as_str(), "500" | "502"));
        let Some((host, port)) = self.plain.as_ref().filter(|_| unknown_command) else {
            return Err(Error::internal(format!("sending a mail: {refused}")));
        };
        let envelope = message.envelope();
        let from = envelope.from().map(|a| a.to_string()).unwrap_or_default();
        let to = envelope.to().first().map(|a| a.to_string()).unwrap_or_default();
        // The name `EHLO` gave.
        let hello = lettre::transport::smtp::extension::ClientId::default().to_string();
        super::helo::send(host, *port, &hello, &from, &to, &message.formatted())
            .await
            .map_err(|e| Error::internal(format!("sending a mail with HELO after {refused}: {e}")))
    }
}
