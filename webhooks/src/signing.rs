//! The Standard Webhooks signature scheme. An endpoint's secret is `whsec_` and the base64 of
//! 32 bytes; it is never stored: it is derived from the platform's webhook key, the
//! endpoint's id and the aggregate version of the event that set it (which the log holds),
//! so whoever holds the key can tell it again and nobody who reads the log can.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The platform's webhook key (`PLEXICA_WEBHOOK_KEY`).
#[derive(Clone)]
pub struct SigningKey(SecretString);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(…)")
    }
}

impl SigningKey {
    pub fn new(key: SecretString) -> Self {
        Self(key)
    }

    /// The secret of endpoint `id` set by its event of aggregate version `version`.
    pub fn endpoint_secret(&self, id: Uuid, version: i64) -> EndpointSecret {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(format!("plexica webhook secret\n{id}\n{version}").as_bytes());
        EndpointSecret(mac.finalize().into_bytes().to_vec())
    }
}

/// An endpoint's signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct EndpointSecret(Vec<u8>);

impl std::fmt::Debug for EndpointSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EndpointSecret(…)")
    }
}

impl EndpointSecret {
    /// Reads a `whsec_…` secret; `None` for anything else.
    pub fn from_whsec(text: &str) -> Option<Self> {
        STANDARD
            .decode(text.strip_prefix("whsec_")?)
            .ok()
            .filter(|key| !key.is_empty())
            .map(Self)
    }

    /// `whsec_…`, as the Standard Webhooks libraries take it.
    pub fn reveal(&self) -> SecretString {
        SecretString::from(format!("whsec_{}", STANDARD.encode(&self.0)))
    }

    /// The `webhook-signature` header of message `id` sent at `timestamp` (Unix seconds) with
    /// `body`: `v1,` and the base64 of HMAC-SHA256 over `{id}.{timestamp}.{body}`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        mac.update(format!("{id}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_as_the_specification_says() {
        let secret =
            EndpointSecret::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("a secret");
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1_614_265_330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert!(EndpointSecret::from_whsec("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_none());
    }

    #[test]
    fn a_secret_depends_on_the_key_the_endpoint_and_the_version_that_set_it() {
        let key = SigningKey::new(SecretString::from("k1"));
        let id = Uuid::from_u128(1);
        let secret = key.endpoint_secret(id, 0);
        assert_eq!(
            secret,
            key.endpoint_secret(id, 0),
            "derived again, the same"
        );
        assert_ne!(secret, key.endpoint_secret(id, 1));
        assert_ne!(secret, key.endpoint_secret(Uuid::from_u128(2), 0));
        assert_ne!(
            secret,
            SigningKey::new(SecretString::from("k2")).endpoint_secret(id, 0)
        );
        let revealed = secret.reveal();
        let text = revealed.expose_secret();
        assert_eq!(EndpointSecret::from_whsec(text), Some(secret.clone()));
        assert_eq!(STANDARD.decode(&text[6..]).expect("base64").len(), 32);
        assert!(!format!("{secret:?}").contains(&text[6..]));
    }
}
