//! The names a registry accepts, by the OCI distribution spec's grammar: repository
//! names, tags and digests (the digest type is storage's, shared with everything that
//! names files by digest). Anything else is refused before it reaches storage, so no
//! name can walk out of its place (`..`, `/`, NUL).

pub use nimbus_storage::{Algorithm, DigestError, OciDigest};

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
    fn references_are_tags_or_digests() {
        assert_eq!(Reference::parse("v1"), Some(Reference::Tag("v1".into())));
        assert!(Reference::parse("../x").is_none());
    }
}
