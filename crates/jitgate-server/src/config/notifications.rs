//! `[notifications]` and its `[[notifications.channels]]`: read as written (one flat table per
//! channel, unknown keys refused), then checked into [`jitgate_notify::Channel`]s, each mistake
//! reported at the channel's line.

use super::*;
use jitgate_notify::channel::{Email, Slack, SLACK_EMAIL_PREFIX};
use jitgate_notify::{Channel, ChannelKind, EventKind, Filter, SmtpTls};

/// What the server does about notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettings {
    /// Where people reach the pages, for the links in messages; `None`: the server's own
    /// address (`http(s)://HOST:PORT`).
    pub public_url: Option<url::Url>,
    /// How long before a grant's end its holder is warned; zero: never.
    pub ending_soon: Duration,
    /// After this many failed attempts at one message, administrators are alerted.
    pub alert_after: u32,
    /// After this many, the message is marked failed (`jitgate admin notifications retry`).
    pub give_up_after: u32,
    pub channels: Vec<Channel>,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            public_url: None,
            ending_soon: Duration::from_secs(600),
            alert_after: 5,
            give_up_after: 20,
            channels: Vec::new(),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct NotificationsSection {
    public_url: Option<String>,
    #[serde(default, with = "opt_duration")]
    ending_soon: Option<Duration>,
    alert_after: Option<u32>,
    give_up_after: Option<u32>,
    #[serde(default)]
    channels: Vec<toml::Spanned<ChannelSection>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelSection {
    name: String,
    kind: String,
    #[serde(default)]
    events: BTreeSet<String>,
    #[serde(default)]
    resources: BTreeSet<String>,
    #[serde(default)]
    roles: BTreeSet<String>,
    // webhook
    url: Option<String>,
    // slack
    api_url: Option<String>,
    #[serde(default)]
    incoming_webhook: bool,
    channel: Option<String>,
    #[serde(default)]
    resource_channels: BTreeMap<String, String>,
    #[serde(default)]
    direct_by_email: bool,
    // email
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_tls: Option<String>,
    smtp_username: Option<String>,
    from: Option<String>,
}

/// An `http(s)://` URL; plain HTTP only to a loopback host, where nothing travels the network.
pub(crate) fn web_url(what: &str, text: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(text).map_err(|e| format!("{what} {text:?} is not a URL: {e}"))?;
    match u.scheme() {
        "https" => Ok(u),
        "http" if is_loopback(u.host_str().unwrap_or("")) => Ok(u),
        "http" => Err(format!("{what} {text:?}: plain http only to a loopback address; use https")),
        _ => Err(format!("{what} {text:?} is not an http(s) URL")),
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl ChannelSection {
    /// The keys this kind does not take, if any were given.
    fn stray_keys(&self) -> Vec<&'static str> {
        let mut stray = Vec::new();
        let webhook = self.kind == "webhook";
        let slack = self.kind == "slack";
        let email = self.kind == "email";
        let mut check = |given: bool, key: &'static str, allowed: bool| {
            if given && !allowed {
                stray.push(key);
            }
        };
        check(self.url.is_some(), "url", webhook);
        check(self.api_url.is_some(), "api_url", slack);
        check(self.incoming_webhook, "incoming_webhook", slack);
        check(self.channel.is_some(), "channel", slack);
        check(!self.resource_channels.is_empty(), "resource_channels", slack);
        check(self.direct_by_email, "direct_by_email", slack);
        check(self.smtp_host.is_some(), "smtp_host", email);
        check(self.smtp_port.is_some(), "smtp_port", email);
        check(self.smtp_tls.is_some(), "smtp_tls", email);
        check(self.smtp_username.is_some(), "smtp_username", email);
        check(self.from.is_some(), "from", email);
        stray
    }

    fn into_channel(self) -> Result<Channel, String> {
        let name = self.name.clone();
        if name.is_empty() || name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("channel name {name:?}: 1 to 64 letters, digits, '-' or '_'"));
        }
        let stray = self.stray_keys();
        if !stray.is_empty() {
            return Err(format!("channel {name} ({}) does not take {}", self.kind, stray.join(", ")));
        }
        let mut events = BTreeSet::new();
        for e in &self.events {
            let known = EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ");
            events.insert(EventKind::parse(e).ok_or_else(|| format!("channel {name}: unknown event {e:?} (known: {known})"))?);
        }
        let filter = Filter {
            events,
            resources: self.resources,
            roles: self.roles,
        };
        let kind = match self.kind.as_str() {
            "webhook" => {
                let url = self.url.ok_or_else(|| format!("channel {name} (webhook) needs url"))?;
                ChannelKind::Webhook {
                    url: web_url(&format!("channel {name}: url"), &url)?,
                }
            }
            "slack" => {
                let api_url = web_url(
                    &format!("channel {name}: api_url"),
                    self.api_url.as_deref().unwrap_or("https://slack.com/api"),
                )?;
                if self.incoming_webhook && (self.channel.is_some() || !self.resource_channels.is_empty() || self.direct_by_email) {
                    return Err(format!(
                        "channel {name}: an incoming webhook posts where it was made; channel, resource_channels and direct_by_email need a bot token"
                    ));
                }
                if !self.incoming_webhook && self.channel.is_none() && self.resource_channels.is_empty() && !self.direct_by_email {
                    return Err(format!(
                        "channel {name} (slack): say where messages go: channel, resource_channels or direct_by_email"
                    ));
                }
                if let Some(c) = self
                    .channel
                    .iter()
                    .chain(self.resource_channels.values())
                    .find(|c| c.is_empty() || c.starts_with(SLACK_EMAIL_PREFIX))
                {
                    return Err(format!("channel {name}: {c:?} is not a Slack channel"));
                }
                ChannelKind::Slack(Slack {
                    api_url,
                    incoming_webhook: self.incoming_webhook,
                    channel: self.channel,
                    resource_channels: self.resource_channels,
                    direct_by_email: self.direct_by_email,
                })
            }
            "email" => {
                let host = self.smtp_host.ok_or_else(|| format!("channel {name} (email) needs smtp_host"))?;
                let tls = match self.smtp_tls.as_deref().unwrap_or("starttls") {
                    "tls" => SmtpTls::Tls,
                    "starttls" => SmtpTls::StartTls,
                    "none" if is_loopback(&host) => SmtpTls::None,
                    "none" => {
                        return Err(format!(
                            "channel {name}: smtp_tls = \"none\" only to a loopback relay; {host} needs \"starttls\" or \"tls\""
                        ))
                    }
                    other => {
                        return Err(format!(
                            "channel {name}: smtp_tls {other:?} is not \"tls\", \"starttls\" or \"none\""
                        ))
                    }
                };
                let from = self.from.ok_or_else(|| format!("channel {name} (email) needs from"))?;
                // Checked with the parser that will send it.
                from.parse::<jitgate_notify::send::Mailbox>()
                    .map_err(|e| format!("channel {name}: from {from:?} is not an address: {e}"))?;
                let port = self.smtp_port.unwrap_or(match tls {
                    SmtpTls::Tls => 465,
                    SmtpTls::StartTls => 587,
                    SmtpTls::None => 25,
                });
                ChannelKind::Email(Email {
                    host,
                    port,
                    tls,
                    username: self.smtp_username,
                    from,
                })
            }
            other => return Err(format!("channel {name}: kind {other:?} is not webhook, slack or email")),
        };
        Ok(Channel { name, filter, kind })
    }
}

pub(super) fn apply(
    settings: &mut Settings,
    section: NotificationsSection,
    err_at: &dyn Fn(usize, String) -> ConfigError,
    err_key: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let n = &mut settings.notifications;
    if let Some(u) = section.public_url {
        let parsed = url::Url::parse(&u).map_err(|e| err_key("public_url", format!("notifications.public_url {u:?}: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err(err_key(
                "public_url",
                format!("notifications.public_url {u:?} is not an http(s) URL"),
            ));
        }
        n.public_url = Some(parsed);
    }
    if let Some(d) = section.ending_soon {
        n.ending_soon = d;
    }
    if let Some(a) = section.alert_after {
        n.alert_after = a.max(1);
    }
    if let Some(g) = section.give_up_after {
        if g == 0 {
            return Err(err_key("give_up_after", "notifications.give_up_after must be at least 1".into()));
        }
        n.give_up_after = g;
    }
    let mut seen = BTreeSet::new();
    for spanned in section.channels {
        let at = spanned.span().start;
        let channel = spanned.into_inner().into_channel().map_err(|e| err_at(at, e))?;
        if !seen.insert(channel.name.clone()) {
            return Err(err_at(at, format!("channel '{}' is declared twice", channel.name)));
        }
        n.channels.push(channel);
    }
    Ok(())
}
