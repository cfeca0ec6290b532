//! The names a registry accepts, by the OCI distribution spec's grammar: repository
//! names, tags and digests. Anything else is refused before it reaches storage, so
//! no name can walk out of its place (`..`, `/`, NUL).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

/// ECR's bound on a repository name.
pub const MAX_REPOSITORY_NAME: usize = 256;

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`, 2 to 256
/// characters (ECR's bounds).
pub fn valid_repository(name: &str) -> bool {
    (2..=MAX_REPOSITORY_NAME).contains(&name.len()) && name.split('/').all(valid_component)
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__` or a run of `-`, always between alphanumerics.
        let run = bytes[i..].iter().take_while(|b| !alnum(**b)).count();
        let separator = &component[i..i + run];
        let ok = separator == "."
            || separator == "_"
            || separator == "__"
            || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
        i += run;
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

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

/// A content digest as OCI writes it, `<algorithm>:<lowercase hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OciDigest {
    pub algorithm: Algorithm,
    pub hex: String,
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

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(OciDigest),
}

impl Reference {
    /// Parses a `<reference>` path segment; `None` when it is neither a valid tag nor
    /// a valid digest.
    pub fn parse(text: &str) -> Option<Self> {
        if text.contains(':') {
            text.parse().ok().map(Reference::Digest)
        } else if valid_tag(text) {
            Some(Reference::Tag(text.to_owned()))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_spec() {
        for good in ["ab", "library/busybox", "a.b_c__d---e/f0", "x9/y-z"] {
            assert!(valid_repository(good), "{good}");
        }
        for bad in [
            "a",
            "../etc",
            "a/../b",
            "A",
            "a//b",
            "/ab",
            "ab/",
            "a..b",
            "a___b",
            "a-",
            "-a",
            "a b",
            "a\0b",
            &"a".repeat(257),
        ] {
            assert!(!valid_repository(bad), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_spec() {
        assert!(valid_tag("latest") && valid_tag("_x") && valid_tag("v1.2-rc_3"));
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(!valid_tag(bad), "{bad}");
        }
    }

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
        assert_eq!(Reference::parse("v1"), Some(Reference::Tag("v1".into())));
        assert!(Reference::parse("../x").is_none());
    }
}
