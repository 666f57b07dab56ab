//! What keeps the pages safe to use in a browser: the security headers on every answer, the
//! cookies (session, sign-in ticket, pre-session CSRF) and the CSRF tokens that every change
//! must carry.

use crate::Web;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The session cookie over plain HTTP (localhost, a TLS-terminating proxy in front).
pub const SESSION_COOKIE: &str = "jitgate_session";
/// The session cookie when the pages' origin is `https://`: the `__Host-` prefix makes the
/// browser refuse it unless it is `Secure`, for the whole host, and set by the host itself.
pub const SESSION_COOKIE_SECURE: &str = "__Host-jitgate_session";
const TICKET_COOKIE: &str = "jitgate_signin";
const PRESESSION_COOKIE: &str = "jitgate_csrf";
/// Ties a single sign-on to the browser that started it. `SameSite=Lax`, unlike the others:
/// the provider sends the browser back with a cross-site navigation, on which a `Strict`
/// cookie would not come along.
const SSO_COOKIE: &str = "jitgate_sso";

/// No script or style but our own files, no frames, forms only to ourselves. Images may be
/// `data:` for the TOTP QR code.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(crate) async fn headers(State(web): State<Web>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: &'static str, value: &'static str| {
        h.insert(name, HeaderValue::from_static(value));
    };
    set(h, "content-security-policy", CSP);
    set(h, "x-content-type-options", "nosniff");
    set(h, "x-frame-options", "DENY");
    set(h, "referrer-policy", "no-referrer");
    set(h, "cross-origin-opener-policy", "same-origin");
    set(h, "cross-origin-resource-policy", "same-origin");
    set(h, "permissions-policy", "camera=(), microphone=(), geolocation=(), payment=()");
    if !h.contains_key(header::CACHE_CONTROL) {
        // Pages show who has access to what: nothing of them stays in a cache.
        set(h, "cache-control", "no-store");
    }
    if web.secure {
        set(h, "strict-transport-security", "max-age=31536000");
    }
    response
}

impl Web {
    fn name(&self, plain: &'static str) -> String {
        if self.secure {
            format!("__Host-{plain}")
        } else {
            plain.to_owned()
        }
    }

    fn cookie(&self, plain: &'static str, value: String, max_age_secs: i64) -> Cookie<'static> {
        Cookie::build((self.name(plain), value))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(self.secure)
            .max_age(time::Duration::seconds(max_age_secs))
            .build()
    }

    fn removal(&self, plain: &'static str) -> Cookie<'static> {
        let mut c = self.cookie(plain, String::new(), 0);
        c.make_removal();
        c
    }

    pub fn session_of<'a>(&self, jar: &'a CookieJar) -> Option<&'a str> {
        jar.get(&self.name(SESSION_COOKIE)).map(Cookie::value).filter(|v| !v.is_empty())
    }

    pub fn with_session(&self, jar: CookieJar, token: &str, max_age_secs: i64) -> CookieJar {
        jar.add(self.cookie(SESSION_COOKIE, token.to_owned(), max_age_secs))
            .remove(self.removal(TICKET_COOKIE))
    }

    pub fn without_session(&self, jar: CookieJar) -> CookieJar {
        jar.remove(self.removal(SESSION_COOKIE))
    }

    pub fn ticket_of<'a>(&self, jar: &'a CookieJar) -> Option<&'a str> {
        jar.get(&self.name(TICKET_COOKIE)).map(Cookie::value).filter(|v| !v.is_empty())
    }

    /// The sign-in ticket stays in a cookie between the password and the second factor: never
    /// in the page or the address, where it could be copied or logged.
    pub fn with_ticket(&self, jar: CookieJar, ticket: &str, max_age_secs: i64) -> CookieJar {
        jar.add(self.cookie(TICKET_COOKIE, ticket.to_owned(), max_age_secs))
    }

    /// A new sign-in binding: the cookie's value (the sign-in keeps only its hash).
    pub fn with_sso_binding(&self, jar: CookieJar) -> (CookieJar, String) {
        let value = self.presession_key.issue();
        let mut cookie = self.cookie(SSO_COOKIE, value.clone(), 600);
        cookie.set_same_site(SameSite::Lax);
        (jar.add(cookie), value)
    }

    pub fn sso_binding_of<'a>(&self, jar: &'a CookieJar) -> Option<&'a str> {
        jar.get(&self.name(SSO_COOKIE)).map(Cookie::value).filter(|v| !v.is_empty())
    }

    pub fn without_sso_binding(&self, jar: CookieJar) -> CookieJar {
        let mut removal = self.removal(SSO_COOKIE);
        removal.set_same_site(SameSite::Lax);
        jar.remove(removal)
    }

    /// The CSRF token of a visitor without a session (the sign-in forms), as a double-submit
    /// cookie: made when the form is first shown.
    pub fn presession_token(&self, jar: CookieJar) -> (CookieJar, String) {
        match jar.get(&self.name(PRESESSION_COOKIE)).map(|c| c.value().to_owned()) {
            Some(t) if self.presession_key.issued(&t) => (jar, t),
            _ => {
                let token = self.presession_key.issue();
                (jar.add(self.cookie(PRESESSION_COOKIE, token.clone(), 3600)), token)
            }
        }
    }

    /// Whether a sign-in form came with the token its cookie holds, and that token is one
    /// this server made (a cookie planted by someone else, from a sibling domain say, is not).
    pub fn presession_ok(&self, jar: &CookieJar, submitted: &str) -> bool {
        jar.get(&self.name(PRESESSION_COOKIE))
            .is_some_and(|c| self.presession_key.issued(c.value()) && same(c.value(), submitted))
    }
}

/// Makes and recognizes pre-session CSRF tokens: a random half and its MAC under a key derived
/// from the audit signing key (which every instance of one deployment shares, so a form shown
/// by one instance is accepted by another).
#[derive(Clone)]
pub(crate) struct PresessionKey([u8; 32]);

impl PresessionKey {
    pub fn derive(secret: &[u8]) -> Self {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"jitgate-web presession csrf");
        Self(mac.finalize().into_bytes().into())
    }

    fn mac_of(&self, nonce: &[u8]) -> [u8; 16] {
        use hmac::{Hmac, Mac};
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(nonce);
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }

    fn issue(&self) -> String {
        let nonce: [u8; 16] = rand::random();
        format!("{}{}", hex::encode(nonce), hex::encode(self.mac_of(&nonce)))
    }

    fn issued(&self, token: &str) -> bool {
        let Ok(bytes) = hex::decode(token) else {
            return false;
        };
        bytes.len() == 32 && bool::from(self.mac_of(&bytes[..16]).ct_eq(&bytes[16..]))
    }
}

/// The CSRF token of a session: a digest of its token, so it needs no storage, differs per
/// session, and tells nothing about the session token itself.
pub fn csrf_token_for(session_token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"jitgate-web-csrf\0");
    h.update(session_token.as_bytes());
    hex::encode(h.finalize())
}

/// Compares in constant time.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Where to go after signing in: only a path on this site. Browsers read `//host` and
/// `/\host` as another host, and drop tabs and newlines from a URL before reading it (so
/// `/<TAB>/host` is `//host`): a path with a backslash, a space or any control character
/// anywhere is refused outright (as is anything but printable ASCII, which a `Location` header
/// cannot carry as it is), and what is left must start with one `/`.
pub(crate) fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && p.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') => p.to_owned(),
        _ => "/".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/requests/abc")), "/requests/abc");
        assert_eq!(local_path(Some("//evil.example/")), "/");
        assert_eq!(local_path(Some("/\\evil.example")), "/");
        assert_eq!(local_path(Some("https://evil.example/")), "/");
        assert_eq!(local_path(Some("/x\r\nSet-Cookie: a=b")), "/");
        assert_eq!(local_path(None), "/");
        // Browsers drop tabs and newlines, then read `//host` or `/\host` as another host.
        for sneaky in [
            "/\t/evil.example/",
            "/\n/evil.example",
            "/\t\\evil.example",
            "/ /evil.example",
            "/x\\y",
        ] {
            assert_eq!(local_path(Some(sneaky)), "/", "{sneaky:?}");
        }
        // Characters no header may carry are refused rather than answered with a 500.
        for unsendable in ["/\u{0b}", "/\u{0c}", "/\u{0}", "/\u{7f}", "/\u{85}", "/é"] {
            assert_eq!(local_path(Some(unsendable)), "/", "{unsendable:?}");
        }
        assert_eq!(
            local_path(Some("/requests/req_1?tab=reviews#top")),
            "/requests/req_1?tab=reviews#top"
        );
    }

    #[test]
    fn only_presession_tokens_this_key_made_are_recognized() {
        let key = PresessionKey::derive(b"one deployment's secret");
        let token = key.issue();
        assert_eq!(token.len(), 64);
        assert!(key.issued(&token));
        assert!(
            PresessionKey::derive(b"one deployment's secret").issued(&token),
            "another instance, same secret"
        );
        assert!(!PresessionKey::derive(b"another secret").issued(&token));
        let mut forged = token.clone().into_bytes();
        forged[63] = if forged[63] == b'0' { b'1' } else { b'0' };
        assert!(!key.issued(&String::from_utf8(forged).unwrap()));
        assert!(!key.issued(&"0".repeat(64)));
        assert!(!key.issued("not hex at all, but sixty-four characters long, padded with xxxxx"));
        assert!(!key.issued(""));
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_compare_exactly() {
        let a = csrf_token_for("one");
        assert_eq!(a, csrf_token_for("one"));
        assert_ne!(a, csrf_token_for("two"));
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &a[..63]));
        assert!(!same(&a, ""));
    }
}
