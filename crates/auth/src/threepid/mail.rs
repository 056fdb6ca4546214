//! Sending validation mails through the configured SMTP server (lettre, TLS by rustls).

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, header::ContentType},
    transport::smtp::{
        authentication::Credentials,
        client::{Tls, TlsParameters},
    },
};
use trellis_core::{
    Error, Result,
    config::{EmailConfig, SmtpTls},
};

/// The SMTP connection settings and the sender address, checked once at start.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
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
        Ok(Mailer { transport: builder.build(), from })
    }

    /// Sends a plain-text mail to `to`.
    pub async fn send(&self, to: &str, subject: &str, body: String) -> Result<()> {
        let to: Mailbox = to.parse().map_err(|_| Error::invalid_param("Unable to parse email address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Error::internal(format!("building a mail: {e}")))?;
        self.transport.send(message).await.map_err(|e| Error::internal(format!("sending a mail: {e}")))?;
        Ok(())
    }
}
