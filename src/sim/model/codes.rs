//! OAuth authorization codes: the one-time codes the consent page hands out and the
//! token endpoint redeems (ten minutes, one use), and the PKCE rules (`S256` only).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::tokens::new_token;

/// How long an issued code can be redeemed (Webex does not document it; ten minutes is
/// the usual upper bound, RFC 6749 section 4.1.2).
pub(crate) const CODE_LIFETIME: Duration = Duration::from_secs(600);

/// What an issued code was granted for; the token request must match it.
#[derive(Clone, Debug)]
pub(crate) struct PendingCode {
    /// The client that asked for it.
    pub(crate) client_id: String,
    /// The `redirect_uri` of the authorization request, compared verbatim.
    pub(crate) redirect_uri: String,
    /// The S256 `code_challenge`, if the request used PKCE.
    pub(crate) code_challenge: Option<String>,
    /// The scope asked for (only logged: the answer reports the configured scopes).
    pub(crate) scope: Option<String>,
    /// When it was issued.
    pub(crate) issued: Instant,
}

/// Codes issued and not yet redeemed.
#[derive(Debug, Default)]
pub(crate) struct CodeStore {
    /// By code.
    pending: HashMap<String, PendingCode>,
}

impl CodeStore {
    /// Stores `pending` under a fresh random code and returns the code; forgets codes
    /// that have expired.
    pub(crate) fn issue(&mut self, pending: PendingCode) -> String {
        let now = pending.issued;
        self.pending
            .retain(|_, old| now.saturating_duration_since(old.issued) < CODE_LIFETIME);
        let code = new_token("code");
        self.pending.insert(code.clone(), pending);
        code
    }

    /// Removes `code` and returns what it was issued for: a code works at most once,
    /// whatever the outcome of the request that presents it.
    pub(crate) fn take(&mut self, code: &str) -> Option<PendingCode> {
        self.pending.remove(code)
    }
}

/// The S256 code challenge of `verifier`: BASE64URL-NOPAD(SHA-256(verifier)).
pub(crate) fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// True for a verifier RFC 7636 allows: 43 to 128 characters of `[A-Za-z0-9-._~]`.
fn is_valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// PKCE at the token endpoint: a code issued with a challenge needs the matching
/// verifier, and a code issued without one takes none (no downgrade).
pub(crate) fn check_verifier(
    challenge: Option<&str>,
    verifier: Option<&str>,
) -> Result<(), &'static str> {
    const UNEXPECTED: &str = "PKCE: a code_verifier was sent but the authorization request \
        had no code_challenge.";
    const MISSING: &str =
        "PKCE verification failed: the parameter code_verifier is required for this code.";
    const MALFORMED: &str = "PKCE verification failed: the code_verifier must be 43 to 128 \
        characters of [A-Za-z0-9-._~].";
    const MISMATCH: &str =
        "PKCE verification failed: the code_verifier does not match the code_challenge.";
    match (challenge, verifier) {
        (None, None) => Ok(()),
        (None, Some(_)) => Err(UNEXPECTED),
        (Some(_), None) => Err(MISSING),
        (Some(_), Some(verifier)) if !is_valid_verifier(verifier) => Err(MALFORMED),
        (Some(challenge), Some(verifier)) => (pkce_challenge(verifier) == challenge)
            .then_some(())
            .ok_or(MISMATCH),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_valid_verifier(verifier));
        assert_eq!(
            pkce_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifier_format() {
        assert!(!is_valid_verifier(&"a".repeat(42)));
        assert!(is_valid_verifier(&"a".repeat(128)));
        assert!(!is_valid_verifier(&"a".repeat(129)));
        assert!(!is_valid_verifier(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn codes_expire_and_work_once() {
        let mut codes = CodeStore::default();
        let t0 = Instant::now();
        let pending = |issued| PendingCode {
            client_id: "c".to_owned(),
            redirect_uri: "http://x/".to_owned(),
            code_challenge: None,
            scope: None,
            issued,
        };
        let old = codes.issue(pending(t0));
        let fresh = codes.issue(pending(t0 + CODE_LIFETIME));
        assert!(codes.take(&old).is_none(), "expired codes are forgotten");
        assert!(codes.take(&fresh).is_some());
        assert!(codes.take(&fresh).is_none());
    }
}
