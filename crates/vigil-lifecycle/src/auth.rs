//! Who may call the lifecycle API: bearer tokens known by their SHA-256 only, each with a
//! subject, a role and a model scope (globs). The subject is the actor the log records.
//!
//! Roles are ordered, each including the ones before it: `viewer` reads, `operator` registers
//! versions and rolls back, `approver` approves and rejects pending decisions, `admin` may do
//! everything on every model it is scoped to. A route states the role and model it needs with
//! [`Caller::require`]; the middleware in [`crate::api`] has already answered 401 to a request
//! without a known token.

use std::fmt;

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Operator,
    Approver,
    Admin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Viewer, Role::Operator, Role::Approver, Role::Admin].into_iter().find(|r| r.name() == text)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One accepted token: never the token itself, only its SHA-256.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub subject: String,
    pub role: Role,
    /// Model id globs (`*` any run of characters, `?` one); at least one.
    pub models: Vec<String>,
    pub sha256: [u8; 32],
}

impl fmt::Debug for TokenEntry {
    // The hash stays out of logs and panics too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenEntry")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("models", &self.models)
            .finish_non_exhaustive()
    }
}

impl TokenEntry {
    /// An entry for a token given in clear (the legacy `lifecycle.api.token`): only its hash is kept.
    pub fn from_secret(subject: &str, role: Role, models: Vec<String>, token: &str) -> Self {
        Self { subject: subject.to_owned(), role, models, sha256: sha256(token.as_bytes()) }
    }

    /// `subject:role:glob|glob:sha256hex`, the compact form of `lifecycle.api.token_hashes`.
    pub fn parse_spec(spec: &str) -> Result<Self, String> {
        let parts: Vec<&str> = spec.trim().split(':').collect();
        let [subject, role, models, hash] = parts.as_slice() else {
            return Err("expected subject:role:glob|glob:sha256hex".into());
        };
        let role = Role::parse(role)
            .ok_or_else(|| format!("role {role:?} must be viewer, operator, approver or admin"))?;
        let models = models.split('|').map(str::to_owned).collect();
        Self::new(subject, role, models, hash)
    }

    pub fn new(subject: &str, role: Role, models: Vec<String>, sha256_hex: &str) -> Result<Self, String> {
        if subject.trim().is_empty() || subject.len() > 128 {
            return Err("subject must be 1 to 128 characters".into());
        }
        if models.is_empty() || models.iter().any(|m| m.is_empty()) {
            return Err("models must list at least one non-empty glob (\"*\" for all)".into());
        }
        let sha256 = parse_hex32(sha256_hex).ok_or("sha256 must be 64 hex digits")?;
        Ok(Self { subject: subject.trim().to_owned(), role, models, sha256 })
    }
}

/// Who called, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub subject: String,
    pub role: Role,
    pub models: Vec<String>,
}

/// Why a caller may not do something: the answer's 403 body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden(pub String);

impl Caller {
    /// Whether the caller's scope covers `model`.
    pub fn covers(&self, model: &str) -> bool {
        self.models.iter().any(|glob| glob_match(glob, model))
    }

    /// Needs at least `role`, and `model` (when the action is about one) in scope.
    pub fn require(&self, role: Role, model: Option<&str>) -> Result<(), Forbidden> {
        if self.role < role {
            return Err(Forbidden(format!(
                "subject {:?} has role {}; this needs role {role} or higher",
                self.subject, self.role
            )));
        }
        match model {
            Some(m) if !self.covers(m) => Err(Forbidden(format!(
                "subject {:?} is not scoped to model {m:?} (scope: {})",
                self.subject,
                self.models.join(", ")
            ))),
            _ => Ok(()),
        }
    }
}

/// The tokens the API accepts.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<TokenEntry>,
    jwt: Option<crate::jwt::JwtVerifier>,
}

impl Authenticator {
    pub fn new(tokens: Vec<TokenEntry>) -> Self {
        Self { tokens, jwt: None }
    }

    /// Also accepts OIDC JWTs verified against a JWKS.
    pub fn with_jwt(mut self, jwt: crate::jwt::JwtVerifier) -> Self {
        self.jwt = Some(jwt);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.jwt.is_none()
    }

    /// The caller a bearer token stands for. Every entry's hash is compared, in constant time,
    /// whether or not an earlier one matched, so the time taken says nothing about the tokens.
    pub fn authenticate(&self, bearer: &str, now_s: i64) -> Option<Caller> {
        if bearer.is_empty() {
            return None;
        }
        let given = sha256(bearer.as_bytes());
        let mut found = None;
        for entry in &self.tokens {
            if constant_time_eq(&given, &entry.sha256) && found.is_none() {
                found = Some(entry);
            }
        }
        if let Some(e) = found {
            return Some(Caller { subject: e.subject.clone(), role: e.role, models: e.models.clone() });
        }
        // A JWT has two dots; an opaque token that matched nothing is not one.
        match &self.jwt {
            Some(jwt) if bearer.matches('.').count() == 2 => jwt.verify(bearer, now_s).ok(),
            _ => None,
        }
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    sha256(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters (also none), `?` one character; everything else itself.
pub fn glob_match(glob: &str, text: &str) -> bool {
    let (g, t): (Vec<char>, Vec<char>) = (glob.chars().collect(), text.chars().collect());
    let (mut gi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if gi < g.len() && (g[gi] == '?' || g[gi] == t[ti]) {
            gi += 1;
            ti += 1;
        } else if gi < g.len() && g[gi] == '*' {
            star = Some((gi, ti));
            gi += 1;
        } else if let Some((sg, st)) = star {
            gi = sg + 1;
            ti = st + 1;
            star = Some((sg, st + 1));
        } else {
            return false;
        }
    }
    g[gi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(subject: &str, role: Role, models: &[&str], token: &str) -> TokenEntry {
        TokenEntry::from_secret(subject, role, models.iter().map(|m| m.to_string()).collect(), token)
    }

    #[test]
    fn tokens_are_known_by_hash_and_name_their_subject() {
        let auth = Authenticator::new(vec![
            entry("alice", Role::Approver, &["fraud*"], "tok-a"),
            entry("bob", Role::Viewer, &["*"], "tok-b"),
        ]);
        assert_eq!(auth.authenticate("tok-a", 0).unwrap().subject, "alice");
        assert_eq!(auth.authenticate("tok-b", 0).unwrap().role, Role::Viewer);
        assert_eq!(auth.authenticate("tok-c", 0), None);
        assert_eq!(auth.authenticate("", 0), None);
        let debug = format!("{:?}", auth);
        assert!(!debug.contains(&sha256_hex(b"tok-a")), "no hash in {debug}");
    }

    #[test]
    fn roles_and_scopes_are_checked_and_named() {
        let alice = Caller { subject: "alice".into(), role: Role::Operator, models: vec!["fraud-*".into()] };
        assert!(alice.require(Role::Viewer, Some("fraud-de")).is_ok());
        assert!(alice.require(Role::Operator, Some("fraud-de")).is_ok());
        let Forbidden(why) = alice.require(Role::Approver, Some("fraud-de")).unwrap_err();
        assert!(why.contains("role operator") && why.contains("role approver"), "{why}");
        let Forbidden(why) = alice.require(Role::Viewer, Some("churn")).unwrap_err();
        assert!(why.contains("\"churn\"") && why.contains("fraud-*"), "{why}");
    }

    #[test]
    fn spec_strings_parse_with_errors_that_say_what_is_wrong() {
        let hash = sha256_hex(b"t");
        let e = TokenEntry::parse_spec(&format!("ci:operator:fraud|churn-*:{hash}")).unwrap();
        assert_eq!((e.subject.as_str(), e.role, e.models.len()), ("ci", Role::Operator, 2));
        assert!(TokenEntry::parse_spec("ci:boss:*:00").unwrap_err().contains("role \"boss\""));
        assert!(TokenEntry::parse_spec("ci:viewer:*:00").unwrap_err().contains("64 hex"));
        assert!(TokenEntry::parse_spec("ci:viewer").unwrap_err().contains("subject:role"));
    }

    #[test]
    fn globs() {
        for (glob, text, expected) in [
            ("*", "anything", true),
            ("fraud*", "fraud", true),
            ("fraud*", "fraud-de", true),
            ("fraud*", "churn", false),
            ("*-de", "fraud-de", true),
            ("f?aud", "fraud", true),
            ("fraud", "fraud-de", false),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
        ] {
            assert_eq!(glob_match(glob, text), expected, "{glob} {text}");
        }
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3creT", b"s3cret"));
    }
}
