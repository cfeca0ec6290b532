//! Message signatures: the deployment's RSA key and self-signed certificate, made by
//! the first node that needs them (`sns.signing/key`), sign each message as SNS does
//! (SignatureVersion 1: SHA1withRSA, 2: SHA256withRSA, over the message's fields in
//! order), and nimbus serves the certificate at the message's `SigningCertURL`.

use base64::Engine as _;
use nimbus_edge::AwsError;
use nimbus_storage::{Expect, StoreError, WriteBatch};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Value, json};

use crate::{Sns, internal};

pub const SIGNING: &str = "sns.signing";

pub struct SigningKey {
    key: PKey<Private>,
    /// The certificate, PEM.
    pub certificate: String,
    /// Its file name in `SigningCertURL`.
    pub file: String,
}

fn make() -> Result<(String, String), openssl::error::ErrorStack> {
    let rsa = Rsa::generate(2048)?;
    let key = PKey::from_rsa(rsa)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", "sns.amazonaws.com")?;
    let name = name.build();
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    builder.set_serial_number(&serial)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(3650)?);
    builder.set_not_before(&from)?;
    builder.set_not_after(&until)?;
    builder.sign(&key, MessageDigest::sha256())?;
    let certificate = String::from_utf8(builder.build().to_pem()?).unwrap_or_default();
    let key = String::from_utf8(key.private_key_to_pem_pkcs8()?).unwrap_or_default();
    Ok((key, certificate))
}

/// The fields SNS signs, in order, for each kind of message.
fn string_to_sign(message: &Value) -> String {
    let fields: &[&str] = match message["Type"].as_str() {
        Some("Notification") => &[
            "Message",
            "MessageId",
            "Subject",
            "Timestamp",
            "TopicArn",
            "Type",
        ],
        _ => &[
            "Message",
            "MessageId",
            "SubscribeURL",
            "Timestamp",
            "Token",
            "TopicArn",
            "Type",
        ],
    };
    fields
        .iter()
        .filter_map(|field| Some(format!("{field}\n{}\n", message[*field].as_str()?)))
        .collect()
}

impl Sns {
    fn signing_key(&self) -> Result<&SigningKey, AwsError> {
        if let Some(key) = self.key.get() {
            return Ok(key);
        }
        let stored = match self.meta.get(SIGNING, "key").map_err(internal)? {
            Some(record) => record.value,
            None => {
                let (key, certificate) = make().map_err(internal)?;
                let value = json!({ "key": key, "certificate": certificate })
                    .to_string()
                    .into_bytes();
                match self
                    .meta
                    .commit(WriteBatch::new().put(SIGNING, "key", value, Expect::Absent))
                {
                    // Another node made it first: its key is the deployment's.
                    Ok(()) | Err(StoreError::Conflict { .. }) => {}
                    Err(err) => return Err(internal(err)),
                }
                self.meta
                    .get(SIGNING, "key")
                    .map_err(internal)?
                    .ok_or_else(|| internal("the signing key vanished"))?
                    .value
            }
        };
        let stored: Value = serde_json::from_slice(&stored).map_err(internal)?;
        let key = PKey::private_key_from_pem(stored["key"].as_str().unwrap_or_default().as_bytes())
            .map_err(internal)?;
        let certificate = stored["certificate"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let digest = openssl::sha::sha256(certificate.as_bytes());
        let file = format!(
            "SimpleNotificationService-{}.pem",
            digest[..16]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        Ok(self.key.get_or_init(|| SigningKey {
            key,
            certificate,
            file,
        }))
    }

    /// Adds `SignatureVersion`, `Signature` and `SigningCertURL` to a message.
    pub fn sign(&self, message: &mut Value, endpoint: &str, version: &str) -> Result<(), AwsError> {
        let key = self.signing_key()?;
        let digest = if version == "2" {
            MessageDigest::sha256()
        } else {
            MessageDigest::sha1()
        };
        let mut signer = openssl::sign::Signer::new(digest, &key.key).map_err(internal)?;
        signer
            .update(string_to_sign(message).as_bytes())
            .map_err(internal)?;
        let signature = signer.sign_to_vec().map_err(internal)?;
        message["SignatureVersion"] = version.into();
        message["Signature"] = base64::engine::general_purpose::STANDARD
            .encode(signature)
            .into();
        message["SigningCertURL"] = format!("{endpoint}/_nimbus/sns/{}", key.file).into();
        Ok(())
    }

    /// The signing certificate, PEM, when `file` names it.
    pub fn certificate(&self, file: &str) -> Option<String> {
        let key = self.signing_key().ok()?;
        (key.file == file).then(|| key.certificate.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_sign_their_fields_in_order() {
        let message = json!({
            "Type": "Notification", "MessageId": "m", "TopicArn": "t", "Message": "hi",
            "Timestamp": "2026-01-01T00:00:00.000Z", "UnsubscribeURL": "u",
        });
        assert_eq!(
            string_to_sign(&message),
            "Message\nhi\nMessageId\nm\nTimestamp\n2026-01-01T00:00:00.000Z\nTopicArn\nt\nType\nNotification\n"
        );
        let confirmation = json!({"Type": "SubscriptionConfirmation", "Message": "c", "MessageId": "m",
            "SubscribeURL": "s", "Timestamp": "t0", "Token": "k", "TopicArn": "t"});
        assert!(
            string_to_sign(&confirmation).contains("SubscribeURL\ns\nTimestamp\nt0\nToken\nk\n")
        );
    }

    #[test]
    fn signatures_verify_with_the_certificate() {
        let (key, certificate) = make().unwrap();
        let key = PKey::private_key_from_pem(key.as_bytes()).unwrap();
        let mut signer = openssl::sign::Signer::new(MessageDigest::sha1(), &key).unwrap();
        signer.update(b"text").unwrap();
        let signature = signer.sign_to_vec().unwrap();
        let public = X509::from_pem(certificate.as_bytes())
            .unwrap()
            .public_key()
            .unwrap();
        let mut verifier = openssl::sign::Verifier::new(MessageDigest::sha1(), &public).unwrap();
        verifier.update(b"text").unwrap();
        assert!(verifier.verify(&signature).unwrap());
    }
}
