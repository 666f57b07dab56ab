//! What a provider's claims make of a person in jitgate: their user name, their groups (by the
//! provider's mapping rules) and whether their sign-in proved a second factor. Pure: no I/O,
//! the claims are a verified ID token's JSON.

use jitgate_core::names::{GroupName, Username};
use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// How one of the provider's group names becomes a jitgate group.
#[derive(Debug, Clone)]
pub enum GroupMatch {
    /// The provider's group is exactly this name.
    Exact(String),
    /// The provider's group starts with this; without a `group` the rest of the name is the
    /// jitgate group (`jit-dba` with prefix `jit-` is `dba`).
    Prefix(String),
    /// The provider's group matches this (whole-name match: anchored at both ends); the
    /// `group` may use its captures (`$1`, `${team}`).
    Regex(Regex),
}

/// One mapping rule: a match, and the jitgate group it gives (`None` only for a prefix: the
/// rest of the name).
#[derive(Debug, Clone)]
pub struct GroupRule {
    pub matches: GroupMatch,
    pub group: Option<String>,
}

impl GroupRule {
    /// A rule as the config writes it: exactly one of `exact`, `prefix`, `regex`, and `group`
    /// (needed except for a prefix). A regular expression is anchored: it must match the
    /// provider's whole group name.
    pub fn parse(exact: Option<&str>, prefix: Option<&str>, regex: Option<&str>, group: Option<&str>) -> Result<Self, String> {
        let matches = match (exact, prefix, regex) {
            (Some(e), None, None) => GroupMatch::Exact(e.to_owned()),
            (None, Some(p), None) if !p.is_empty() => GroupMatch::Prefix(p.to_owned()),
            (None, None, Some(r)) => GroupMatch::Regex(
                Regex::new(&format!("^(?:{r})$")).map_err(|e| format!("the regular expression {r:?} does not parse: {e}"))?,
            ),
            (None, Some(_), None) => return Err("an empty prefix would match every group".into()),
            _ => return Err("a group rule has exactly one of `exact`, `prefix` and `regex`".into()),
        };
        if group.is_none() && !matches!(matches, GroupMatch::Prefix(_)) {
            return Err("a group rule needs `group`, the jitgate group it gives (only a prefix rule may leave it out)".into());
        }
        if let (Some(g), GroupMatch::Exact(_) | GroupMatch::Prefix(_)) = (group, &matches) {
            GroupName::parse(g).map_err(|e| format!("`group = {g:?}`: {e}"))?;
        }
        Ok(Self {
            matches,
            group: group.map(str::to_owned),
        })
    }

    /// The jitgate group name this rule makes of `theirs`, if it matches (not yet checked as a
    /// group name: a regular expression's captures can make anything).
    fn apply(&self, theirs: &str) -> Option<String> {
        match &self.matches {
            GroupMatch::Exact(e) => (e == theirs).then(|| self.group.clone().unwrap_or_default()),
            GroupMatch::Prefix(p) => theirs
                .strip_prefix(p.as_str())
                .map(|rest| self.group.clone().unwrap_or_else(|| rest.to_owned())),
            GroupMatch::Regex(r) => r.captures(theirs).map(|c| {
                let mut out = String::new();
                c.expand(self.group.as_deref().unwrap_or_default(), &mut out);
                out
            }),
        }
    }

    /// The rule as people wrote it, for explanations.
    pub fn describe(&self) -> String {
        let to = self.group.as_deref().unwrap_or("(the rest)");
        match &self.matches {
            GroupMatch::Exact(e) => format!("exact {e:?} -> {to}"),
            GroupMatch::Prefix(p) => format!("prefix {p:?} -> {to}"),
            GroupMatch::Regex(r) => format!("regex {:?} -> {to}", r.as_str()),
        }
    }
}

/// What the rules made of the provider's groups: each jitgate group with the provider's group
/// and the rule that gave it, and the provider's groups no rule took (or that made a name
/// jitgate cannot use).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedGroups {
    pub groups: BTreeMap<GroupName, (String, String)>,
    pub unmapped: Vec<String>,
    pub refused: Vec<(String, String)>,
}

impl MappedGroups {
    pub fn names(&self) -> BTreeSet<GroupName> {
        self.groups.keys().cloned().collect()
    }
}

/// Applies every rule to every group the provider gave; a group that several rules take gives
/// each of their groups.
pub fn map_groups(theirs: &[String], rules: &[GroupRule]) -> MappedGroups {
    let mut out = MappedGroups::default();
    for g in theirs {
        let mut taken = false;
        for rule in rules {
            let Some(name) = rule.apply(g) else { continue };
            taken = true;
            match GroupName::parse(&name) {
                Ok(n) => {
                    out.groups.entry(n).or_insert_with(|| (g.clone(), rule.describe()));
                }
                Err(e) => out.refused.push((g.clone(), format!("{} made {name:?}: {e}", rule.describe()))),
            }
        }
        if !taken {
            out.unmapped.push(g.clone());
        }
    }
    out
}

/// A claim by its path: `groups`, or `realm_access.roles` for a nested one (Keycloak's roles).
pub fn claim<'a>(claims: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(claims, |v, key| v.get(key))
}

/// The provider's groups from the configured claim: an array of strings, or one string (some
/// providers send a single group so); anything else counts as none.
pub fn groups_claim(claims: &Value, path: &str) -> Vec<String> {
    match claim(claims, path) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The jitgate user name a sign-in stands for, from the configured claim: lower-cased; an
/// e-mail address of one of the allowed domains gives its local part (`alice@example.com` is
/// `alice`). The result must be a valid jitgate name, else the sign-in is refused with why.
pub fn username_from(claims: &Value, path: &str, allowed_domains: &[String]) -> Result<Username, String> {
    let raw = claim(claims, path)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("the ID token has no {path:?} claim to name the user by"))?;
    let lowered = raw.trim().to_lowercase();
    let name = match lowered.rsplit_once('@') {
        Some((local, domain)) if allowed_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) => local.to_owned(),
        _ => lowered,
    };
    Username::parse(&name).map_err(|e| format!("the {path:?} claim {raw:?} is not a jitgate user name: {e}"))
}

/// Whether the sign-in's e-mail is in an allowed domain (when any are configured): the address
/// must be verified by the provider.
pub fn domain_allowed(claims: &Value, allowed_domains: &[String]) -> Result<(), String> {
    if allowed_domains.is_empty() {
        return Ok(());
    }
    let email = claims.get("email").and_then(Value::as_str).unwrap_or_default();
    let verified = claims.get("email_verified").and_then(Value::as_bool).unwrap_or(false);
    let domain = email.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    if !allowed_domains.iter().any(|d| d.eq_ignore_ascii_case(domain)) {
        return Err(format!("the e-mail address {email:?} is not in an allowed domain"));
    }
    if !verified {
        return Err(format!("the provider has not verified the e-mail address {email:?}"));
    }
    Ok(())
}

/// How the provider says the person signed in: `amr` (RFC 8176 method names) and `acr`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthContext {
    pub amr: Vec<String>,
    pub acr: Option<String>,
    /// When the person last authenticated at the provider (seconds since the epoch).
    pub auth_time: Option<i64>,
}

impl AuthContext {
    pub fn from_claims(claims: &Value) -> Self {
        let amr = match claims.get("amr") {
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        };
        Self {
            amr,
            acr: claims.get("acr").and_then(Value::as_str).map(str::to_owned),
            auth_time: claims.get("auth_time").and_then(Value::as_i64),
        }
    }

    /// Whether the provider says a second factor was used: one of `amr` names a method the
    /// provider's config counts as one (by default `mfa`, `otp`, `hwk`, `swk`, `sc`), or `acr` is
    /// one of the configured values.
    pub fn proves_second_factor(&self, factor_amr: &[String], factor_acr: &[String]) -> bool {
        self.amr.iter().any(|m| factor_amr.contains(m)) || self.acr.as_ref().is_some_and(|a| factor_acr.contains(a))
    }
}

/// `amr` values that say a second factor was used, unless a provider's config says otherwise
/// (RFC 8176: multiple factors, one-time password, hardware and software key proof, smart card).
pub const DEFAULT_FACTOR_AMR: [&str; 5] = ["mfa", "otp", "hwk", "swk", "sc"];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Vec<GroupRule> {
        vec![
            GroupRule::parse(Some("Platform On-Call"), None, None, Some("oncall")).unwrap(),
            GroupRule::parse(None, Some("jit-"), None, None).unwrap(),
            GroupRule::parse(None, None, Some("team-(?P<team>[a-z]+)-admins"), Some("${team}-admins")).unwrap(),
        ]
    }

    #[test]
    fn exact_prefix_and_regex_rules_map_groups_and_say_which_rule() {
        let theirs = vec![
            "Platform On-Call".to_owned(),
            "jit-dba".to_owned(),
            "team-payments-admins".to_owned(),
            "everyone".to_owned(),
            "xteam-payments-admins-x".to_owned(),
            "jit-Bad Name".to_owned(),
        ];
        let m = map_groups(&theirs, &rules());
        let names: Vec<_> = m.groups.keys().map(GroupName::as_str).collect();
        assert_eq!(names, ["dba", "oncall", "payments-admins"]);
        assert_eq!(m.groups[&GroupName::parse("oncall").unwrap()].0, "Platform On-Call");
        assert!(m.groups[&GroupName::parse("payments-admins").unwrap()].1.starts_with("regex"));
        // The regular expression is anchored: a name that only contains a match is not taken.
        assert_eq!(m.unmapped, ["everyone", "xteam-payments-admins-x"]);
        assert_eq!(
            m.refused.len(),
            1,
            "a prefix's rest that is not a group name is refused, not mangled"
        );
    }

    #[test]
    fn bad_rules_are_refused_with_why() {
        assert!(GroupRule::parse(None, None, None, Some("x")).is_err());
        assert!(GroupRule::parse(Some("a"), Some("b"), None, Some("x")).is_err());
        assert!(GroupRule::parse(Some("a"), None, None, None).unwrap_err().contains("needs `group`"));
        assert!(GroupRule::parse(None, Some(""), None, None).is_err());
        assert!(GroupRule::parse(None, None, Some("("), Some("x"))
            .unwrap_err()
            .contains("does not parse"));
        assert!(GroupRule::parse(Some("a"), None, None, Some("Not A Group")).is_err());
    }

    #[test]
    fn user_names_come_from_the_claim_lower_cased_and_e_mail_local_parts_only_in_allowed_domains() {
        let domains = vec!["example.com".to_owned()];
        let c = json!({"preferred_username": "Alice", "email": "Alice@Example.com"});
        assert_eq!(username_from(&c, "preferred_username", &domains).unwrap().as_str(), "alice");
        assert_eq!(username_from(&c, "email", &domains).unwrap().as_str(), "alice");
        let other = json!({"email": "alice@elsewhere.org"});
        assert!(
            username_from(&other, "email", &domains).is_err(),
            "another domain's address is no jitgate name"
        );
        assert!(username_from(&json!({}), "preferred_username", &domains)
            .unwrap_err()
            .contains("no"));
        assert!(username_from(&json!({"preferred_username": "a b"}), "preferred_username", &[]).is_err());
    }

    #[test]
    fn only_verified_addresses_in_allowed_domains_pass() {
        let d = vec!["example.com".to_owned()];
        assert!(domain_allowed(&json!({"email": "a@example.com", "email_verified": true}), &d).is_ok());
        assert!(domain_allowed(&json!({"email": "a@example.com", "email_verified": false}), &d).is_err());
        assert!(domain_allowed(&json!({"email": "a@example.com.evil.org", "email_verified": true}), &d).is_err());
        assert!(domain_allowed(&json!({}), &d).is_err());
        assert!(domain_allowed(&json!({}), &[]).is_ok());
    }

    #[test]
    fn nested_group_claims_and_single_strings_are_read() {
        let c = json!({"realm_access": {"roles": ["a", "b", 3]}, "g": "one"});
        assert_eq!(groups_claim(&c, "realm_access.roles"), ["a", "b"]);
        assert_eq!(groups_claim(&c, "g"), ["one"]);
        assert!(groups_claim(&c, "missing").is_empty());
    }

    #[test]
    fn amr_or_acr_decide_whether_a_second_factor_was_proved() {
        let amr: Vec<String> = DEFAULT_FACTOR_AMR.iter().map(|s| (*s).to_owned()).collect();
        let acr = vec!["urn:test:mfa".to_owned()];
        let pwd = AuthContext::from_claims(&json!({"amr": ["pwd"]}));
        assert!(!pwd.proves_second_factor(&amr, &acr));
        assert!(AuthContext::from_claims(&json!({"amr": ["pwd", "otp"]})).proves_second_factor(&amr, &acr));
        assert!(AuthContext::from_claims(&json!({"amr": ["pwd"], "acr": "urn:test:mfa"})).proves_second_factor(&amr, &acr));
        assert!(!AuthContext::from_claims(&json!({"acr": "urn:test:pwd"})).proves_second_factor(&amr, &acr));
        assert_eq!(AuthContext::from_claims(&json!({"auth_time": 5})).auth_time, Some(5));
    }
}
