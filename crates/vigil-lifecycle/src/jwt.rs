//! OIDC bearer tokens for the lifecycle API: a JWT signed with RS256 by the identity provider,
//! verified against a JWKS kept in a local file (fetched and refreshed by whatever deploys vigil,
//! so the API needs no network). The claims name the caller: `sub` (or another claim) is the
//! subject the log records, a role claim and a models claim give the role and the scope.
//!
//! Checked: the header's `alg` is RS256 and its `kid` names a key of the set, the signature,
//! `exp` (required) and `nbf` with a leeway, `iss` and `aud` when configured.

use std::collections::BTreeMap;
use std::path::Path;

use ring::signature::{RsaPublicKeyComponents, RSA_PKCS1_2048_8192_SHA256};
use serde_json::Value;

use crate::auth::{Caller, Role};

/// Clock difference tolerated on `exp` and `nbf`, in seconds.
pub const LEEWAY_S: i64 = 60;
/// Longest JWT accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest JWKS file read, in bytes.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required in `aud` (a string or a list), when set.
    pub audience: Option<String>,
    /// The claim naming the subject (default `sub`).
    pub subject_claim: String,
    /// The claim holding the role (`viewer`, `operator`, `approver`, `admin`).
    pub role_claim: String,
    /// The claim holding the model globs (a list, or one string); missing: no model.
    pub models_claim: String,
}

#[derive(Clone)]
pub struct JwtVerifier {
    keys: BTreeMap<String, (Vec<u8>, Vec<u8>)>,
    settings: JwtSettings,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier").field("kids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl JwtVerifier {
    /// Reads the RSA keys (`kty` RSA, with `kid`, `n`, `e`) of a JWKS file.
    pub fn from_file(path: &Path, settings: JwtSettings) -> Result<Self, String> {
        let shown = path.display();
        let size = std::fs::metadata(path).map_err(|e| format!("cannot read {shown}: {e}"))?.len();
        if size > MAX_JWKS_BYTES {
            return Err(format!("{shown}: {size} bytes, at most {MAX_JWKS_BYTES}"));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
        Self::from_jwks(&text, settings).map_err(|e| format!("{shown}: {e}"))
    }

    pub fn from_jwks(text: &str, settings: JwtSettings) -> Result<Self, String> {
        let jwks: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let mut keys = BTreeMap::new();
        for key in jwks["keys"].as_array().ok_or("no \"keys\" list")? {
            if key["kty"] != "RSA" || key.get("use").is_some_and(|u| u != "sig") {
                continue;
            }
            let field = |name: &str| {
                key[name]
                    .as_str()
                    .and_then(b64url)
                    .ok_or_else(|| format!("an RSA key without a valid {name:?}"))
            };
            let kid = key["kid"].as_str().ok_or("an RSA key without \"kid\"")?.to_owned();
            keys.insert(kid, (field("n")?, field("e")?));
        }
        if keys.is_empty() {
            return Err("no RSA signing key".into());
        }
        Ok(Self { keys, settings })
    }

    /// The caller a valid token names, or why it is refused (never logged with the token).
    pub fn verify(&self, token: &str, now_s: i64) -> Result<Caller, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("token too long".into());
        }
        let mut parts = token.split('.');
        let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a JWT".into());
        };
        let json = |part: &str| -> Result<Value, String> {
            serde_json::from_slice(&b64url(part).ok_or("bad base64url")?).map_err(|e| e.to_string())
        };
        let header = json(h)?;
        if header["alg"] != "RS256" {
            return Err("alg must be RS256".into());
        }
        let kid = header["kid"].as_str().ok_or("no kid")?;
        let (n, e) = self.keys.get(kid).ok_or("unknown kid")?;
        let signature = b64url(s).ok_or("bad signature encoding")?;
        let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
        RsaPublicKeyComponents { n, e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature)
            .map_err(|_| "bad signature")?;
        let claims = json(c)?;
        let exp = claims["exp"].as_i64().ok_or("no exp")?;
        if now_s > exp + LEEWAY_S {
            return Err("expired".into());
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| now_s + LEEWAY_S < nbf) {
            return Err("not yet valid".into());
        }
        if let Some(iss) = &self.settings.issuer {
            if claims["iss"].as_str() != Some(iss) {
                return Err("wrong issuer".into());
            }
        }
        if let Some(aud) = &self.settings.audience {
            let ok = match &claims["aud"] {
                Value::String(a) => a == aud,
                Value::Array(list) => list.iter().any(|a| a == aud.as_str()),
                _ => false,
            };
            if !ok {
                return Err("wrong audience".into());
            }
        }
        let subject = claims[self.settings.subject_claim.as_str()]
            .as_str()
            .filter(|s| !s.trim().is_empty())
            .ok_or("no subject")?;
        let role =
            claims[self.settings.role_claim.as_str()].as_str().and_then(Role::parse).ok_or("no role")?;
        let models = match &claims[self.settings.models_claim.as_str()] {
            Value::String(one) => vec![one.clone()],
            Value::Array(list) => list.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect(),
            _ => Vec::new(),
        };
        Ok(Caller { subject: subject.to_owned(), role, models })
    }
}

/// Base64url without padding (RFC 7515); padding is tolerated. Strict: a length that no byte
/// string has, or unused bits that are not zero, is refused (no two encodings of one signature).
pub fn b64url(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}

/// Base64url without padding, as JWTs and JWKS write it (for tools and tests that make them).
pub fn b64url_encode(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
    use serde_json::json;

    use super::*;

    /// A 2048-bit RSA key made for these tests only (`openssl genpkey`, PKCS#8 DER).
    const TEST_KEY: &[u8] = include_bytes!("../tests/data/jwt-test-key.pk8");

    fn key() -> RsaKeyPair {
        RsaKeyPair::from_pkcs8(TEST_KEY).unwrap()
    }

    pub fn jwks() -> String {
        let public = key().public_key().clone();
        let components: RsaPublicKeyComponents<Vec<u8>> = (&public).into();
        json!({"keys": [{"kty": "RSA", "kid": "k1", "use": "sig", "alg": "RS256",
            "n": b64url_encode(&components.n), "e": b64url_encode(&components.e)}]})
        .to_string()
    }

    pub fn sign(claims: &Value, kid: &str) -> String {
        let header = b64url_encode(json!({"alg": "RS256", "typ": "JWT", "kid": kid}).to_string().as_bytes());
        let body = b64url_encode(claims.to_string().as_bytes());
        let signed = format!("{header}.{body}");
        let key = key();
        let mut signature = vec![0; key.public().modulus_len()];
        key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signed.as_bytes(), &mut signature).unwrap();
        format!("{signed}.{}", b64url_encode(&signature))
    }

    pub fn settings() -> JwtSettings {
        JwtSettings {
            issuer: Some("https://idp.example".into()),
            audience: Some("vigil".into()),
            subject_claim: "sub".into(),
            role_claim: "vigil_role".into(),
            models_claim: "vigil_models".into(),
        }
    }

    #[test]
    fn a_signed_token_names_its_caller_and_every_check_refuses() {
        let verifier = JwtVerifier::from_jwks(&jwks(), settings()).unwrap();
        let claims = json!({"sub": "carol", "iss": "https://idp.example", "aud": ["vigil", "other"],
            "exp": 2_000, "vigil_role": "approver", "vigil_models": ["fraud*"]});
        let caller = verifier.verify(&sign(&claims, "k1"), 1_000).unwrap();
        assert_eq!(
            caller,
            Caller { subject: "carol".into(), role: Role::Approver, models: vec!["fraud*".into()] }
        );
        assert_eq!(verifier.verify(&sign(&claims, "k1"), 3_000).unwrap_err(), "expired");
        assert_eq!(verifier.verify(&sign(&claims, "k2"), 1_000).unwrap_err(), "unknown kid");
        let mut other = claims.clone();
        other["iss"] = json!("https://evil.example");
        assert_eq!(verifier.verify(&sign(&other, "k1"), 1_000).unwrap_err(), "wrong issuer");
        let mut other = claims.clone();
        other["aud"] = json!("else");
        assert_eq!(verifier.verify(&sign(&other, "k1"), 1_000).unwrap_err(), "wrong audience");
        // A changed payload under the old signature.
        let token = sign(&claims, "k1");
        let parts: Vec<&str> = token.split('.').collect();
        let mut forged_claims = claims.clone();
        forged_claims["vigil_role"] = json!("admin");
        let forged =
            format!("{}.{}.{}", parts[0], b64url_encode(forged_claims.to_string().as_bytes()), parts[2]);
        assert_eq!(verifier.verify(&forged, 1_000).unwrap_err(), "bad signature");
        let none = format!("{}.{}.", b64url_encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(verifier.verify(&none, 1_000).unwrap_err(), "alg must be RS256");
    }

    #[test]
    fn base64url_round_trips() {
        for bytes in [&b""[..], b"f", b"fo", b"foo", b"foob", &[0xff, 0xfe, 0x00]] {
            assert_eq!(b64url(&b64url_encode(bytes)).unwrap(), bytes);
        }
        assert_eq!(b64url("a+b"), None);
        assert_eq!(b64url("Zh"), None, "unused bits set");
        assert_eq!(b64url("Zg").unwrap(), b"f");
    }
}
