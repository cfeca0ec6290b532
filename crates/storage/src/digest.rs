//! Content digests as OCI writes them, `<algorithm>:<lowercase hex>`, parsed once
//! wherever one arrives (a manifest, a request, a stored record). Only a parsed
//! [`OciDigest`] names a file, so no digest text can walk out of its directory.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The digest of `bytes` under this algorithm.
    pub fn digest(self, bytes: &[u8]) -> OciDigest {
        let hex = match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(bytes)),
            Algorithm::Sha512 => hex::encode(Sha512::digest(bytes)),
        };
        OciDigest {
            algorithm: self,
            hex,
        }
    }
}

/// A content digest as OCI writes it, `<algorithm>:<lowercase hex>`; made only by
/// hashing or by parsing, so it always is one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    algorithm: Algorithm,
    hex: String,
}

impl PartialOrd for Algorithm {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Algorithm {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name().cmp(other.name())
    }
}

impl OciDigest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex, of the algorithm's length.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    pub fn sha256(bytes: &[u8]) -> Self {
        Algorithm::Sha256.digest(bytes)
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        self.algorithm.digest(bytes) == *self
    }
}

impl fmt::Display for OciDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// The text is not a digest of a supported algorithm.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("unsupported digest algorithm in {0:?}")]
    Unsupported(String),
    #[error("invalid digest {0:?}")]
    Invalid(String),
}

impl FromStr for OciDigest {
    type Err = DigestError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (algorithm, hex) = text
            .split_once(':')
            .ok_or_else(|| DigestError::Invalid(text.to_owned()))?;
        let algorithm = match algorithm {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other
                if !other.is_empty()
                    && other.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"+._-".contains(&b)
                    }) =>
            {
                return Err(DigestError::Unsupported(text.to_owned()));
            }
            _ => return Err(DigestError::Invalid(text.to_owned())),
        };
        let well_formed = hex.len() == algorithm.hex_len()
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(DigestError::Invalid(text.to_owned()));
        }
        Ok(OciDigest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl OciDigest {
    /// The digest as one file name, `<algorithm>-<hex>`: nothing but a validated
    /// algorithm name and hex digits.
    pub fn file_name(&self) -> String {
        format!("{}-{}", self.algorithm.name(), self.hex)
    }
}

impl serde::Serialize for OciDigest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for OciDigest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_parse_and_verify() {
        let digest = OciDigest::sha256(b"abc");
        assert_eq!(digest.to_string().parse::<OciDigest>().unwrap(), digest);
        assert!(digest.matches(b"abc") && !digest.matches(b"abd"));
        let long = Algorithm::Sha512.digest(b"abc");
        assert_eq!(long.to_string().parse::<OciDigest>().unwrap(), long);
        assert!(matches!(
            "md5:abc".parse::<OciDigest>(),
            Err(DigestError::Unsupported(_))
        ));
        for bad in [
            "sha256:abc",
            "sha256",
            &format!("sha256:{}", "A".repeat(64)),
            "Sha256:x",
        ] {
            assert!(
                matches!(bad.parse::<OciDigest>(), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn path_tricks_are_not_digests() {
        for bad in [
            "tmp/../../../../etc",
            "sha256:../../../../etc",
            &format!("sha256:{}/..", "a".repeat(61)),
            &format!("sha256:{}\0", "a".repeat(63)),
            &format!("sha512:{}", "a".repeat(64)),
        ] {
            assert!(bad.parse::<OciDigest>().is_err(), "{bad:?}");
        }
        let digest = OciDigest::sha256(b"layer");
        assert_eq!(digest.file_name(), format!("sha256-{}", digest.hex()));
        let json = serde_json::to_string(&digest).unwrap();
        assert_eq!(serde_json::from_str::<OciDigest>(&json).unwrap(), digest);
        assert!(serde_json::from_str::<OciDigest>("\"tmp/../etc\"").is_err());
    }
}
