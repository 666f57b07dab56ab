//! `[auth]`'s sign-in choices: local passwords on or off (`password`, `break_glass`) and the
//! OpenID Connect providers (`[[auth.oidc]]`), each read as written (unknown keys refused) and
//! checked into a [`jitgate_sso::ProviderConfig`], each mistake reported at its line.

use super::*;
use jitgate_sso::{GroupRule, ProviderConfig, Provisioning, DEFAULT_FACTOR_AMR};

/// How people sign in.
#[derive(Debug, Clone)]
pub struct SignInSettings {
    /// Local passwords for everyone (`true`, the default), or only for `break_glass`.
    pub password: bool,
    /// Who may still sign in with a password when `password = false`, and who never signs in
    /// through a provider (an account kept for when the provider is away).
    pub break_glass: BTreeSet<Username>,
    pub providers: Vec<ProviderConfig>,
    /// The longest an API token may live.
    pub api_token_max: Duration,
}

impl Default for SignInSettings {
    fn default() -> Self {
        Self {
            password: true,
            break_glass: BTreeSet::new(),
            providers: Vec::new(),
            api_token_max: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

impl SignInSettings {
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// Whether `user` may sign in with a local password.
    pub fn password_allowed(&self, user: &Username) -> bool {
        self.password || self.break_glass.contains(user)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OidcSection {
    name: String,
    display_name: Option<String>,
    issuer: String,
    client_id: String,
    scopes: Option<Vec<String>>,
    #[serde(default)]
    allowed_domains: Vec<String>,
    username_claim: Option<String>,
    groups_claim: Option<String>,
    users: Option<String>,
    second_factor_amr: Option<Vec<String>>,
    #[serde(default)]
    second_factor_acr: Vec<String>,
    #[serde(default)]
    group_rules: Vec<GroupRuleSection>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupRuleSection {
    exact: Option<String>,
    prefix: Option<String>,
    regex: Option<String>,
    group: Option<String>,
}

impl OidcSection {
    fn into_provider(self) -> Result<ProviderConfig, String> {
        let name = self.name;
        if name.is_empty() || name.len() > 32 || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(format!("provider name {name:?}: 1 to 32 lower-case letters, digits or '-'"));
        }
        super::notifications::web_url(&format!("provider {name}: issuer"), &self.issuer)?;
        let issuer = self.issuer;
        if self.client_id.is_empty() {
            return Err(format!("provider {name}: client_id is empty"));
        }
        let mut scopes = self
            .scopes
            .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]);
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        if let Some(s) = scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
            return Err(format!("provider {name}: scope {s:?} is not one word"));
        }
        let provisioning = match self.users.as_deref().unwrap_or("create") {
            "create" => Provisioning::Create,
            "existing" => Provisioning::Existing,
            other => return Err(format!("provider {name}: users = {other:?} is not \"create\" or \"existing\"")),
        };
        let mut group_rules = Vec::new();
        for (i, r) in self.group_rules.iter().enumerate() {
            group_rules.push(
                GroupRule::parse(r.exact.as_deref(), r.prefix.as_deref(), r.regex.as_deref(), r.group.as_deref())
                    .map_err(|e| format!("provider {name}: group rule {}: {e}", i + 1))?,
            );
        }
        let allowed_domains: Vec<String> = self.allowed_domains.iter().map(|d| d.trim().to_lowercase()).collect();
        if let Some(d) = allowed_domains.iter().find(|d| d.is_empty() || d.contains(['@', '/', ' '])) {
            return Err(format!("provider {name}: allowed domain {d:?} is not a domain"));
        }
        Ok(ProviderConfig {
            display_name: self.display_name.unwrap_or_else(|| name.clone()),
            issuer,
            client_id: self.client_id,
            scopes,
            allowed_domains,
            username_claim: self.username_claim.unwrap_or_else(|| "preferred_username".into()),
            groups_claim: self.groups_claim.unwrap_or_else(|| "groups".into()),
            group_rules,
            provisioning,
            factor_amr: self
                .second_factor_amr
                .unwrap_or_else(|| DEFAULT_FACTOR_AMR.iter().map(|s| (*s).to_owned()).collect()),
            factor_acr: self.second_factor_acr,
            name,
        })
    }
}

pub(super) fn apply(
    settings: &mut Settings,
    password: Option<bool>,
    break_glass: BTreeSet<Username>,
    providers: Vec<toml::Spanned<OidcSection>>,
    api_token_max: Option<Duration>,
    err_at: &dyn Fn(usize, String) -> ConfigError,
    err_key: &dyn Fn(&str, String) -> ConfigError,
) -> Result<(), ConfigError> {
    let s = &mut settings.sign_in;
    s.password = password.unwrap_or(true);
    s.break_glass = break_glass;
    match api_token_max {
        Some(d) if d < Duration::from_secs(60) => {
            return Err(err_key("auth.api_token_max", "auth.api_token_max must be at least 1m".into()))
        }
        Some(d) => s.api_token_max = d,
        None => {}
    }
    for spanned in providers {
        let at = spanned.span().start;
        let provider = spanned.into_inner().into_provider().map_err(|e| err_at(at, e))?;
        if s.providers.iter().any(|p| p.name == provider.name) {
            return Err(err_at(at, format!("provider '{}' is declared twice", provider.name)));
        }
        s.providers.push(provider);
    }
    if !s.password && s.providers.is_empty() {
        return Err(err_key(
            "auth.password",
            "auth.password = false needs a way in: at least one [[auth.oidc]] provider".into(),
        ));
    }
    Ok(())
}
