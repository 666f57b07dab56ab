//! Names that arrive from people and files, parsed once into types that cannot hold a bad value.

use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

macro_rules! name_type {
    ($(#[$doc:meta])* $ty:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $ty(String);

        impl $ty {
            pub fn parse(s: &str) -> Result<Self, String> {
                validate_name(s, $what).map(|()| Self(s.to_owned()))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                Self::parse(s)
            }
        }

        /// What `validate_name` accepts, as the API document states it.
        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                name_schema($what)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $ty {}
    };
}

/// The pattern `validate_name` enforces (its length too: 1 to 64).
pub const NAME_PATTERN: &str = "^[a-z0-9][a-z0-9._-]{0,63}$";

#[cfg(feature = "openapi")]
fn name_schema(what: &str) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .description(Some(format!(
            "A {what}: lower-case letters, digits, '.', '_' and '-', starting with a letter or digit; 1 to 64 characters"
        )))
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some(NAME_PATTERN))
        .into()
}

name_type!(
    /// A login name: lower-case letters, digits, `.`, `_`, `-`; 1 to 64 characters.
    Username, "user name"
);
name_type!(GroupName, "group name");
name_type!(ResourceName, "resource name");
name_type!(RoleName, "role name");

fn validate_name(s: &str, what: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-');
    if s.is_empty() || s.len() > 64 {
        return Err(format!("a {what} must have 1 to 64 characters"));
    }
    if !s.chars().all(ok_char) || !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "'{s}' is not a valid {what}: use lower-case letters, digits, '.', '_' and '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_refuse_what_would_confuse_a_reader() {
        assert!(Username::parse("alice").is_ok());
        assert!(Username::parse("a.b-c_1").is_ok());
        assert!(Username::parse("").is_err());
        assert!(Username::parse("Alice").is_err());
        assert!(Username::parse("-x").is_err());
        assert!(Username::parse("a b").is_err());
        assert!(Username::parse(&"a".repeat(65)).is_err());
        assert!(serde_json::from_str::<Username>("\"bad name\"").is_err());
    }

    #[test]
    fn the_documented_pattern_is_what_parse_accepts() {
        let pattern = regex::Regex::new(NAME_PATTERN).unwrap();
        let samples = ["a", "0", "a.b-c_1", "", "A", "-x", ".x", "a b", "é", "a/b", "ab\n"];
        let long = ["a".repeat(64), "a".repeat(65)];
        for s in samples.iter().copied().chain(long.iter().map(String::as_str)) {
            assert_eq!(pattern.is_match(s), Username::parse(s).is_ok(), "{s:?}");
        }
    }
}
