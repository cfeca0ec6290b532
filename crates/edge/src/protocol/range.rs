//! HTTP `Range` requests, as S3 objects and registry blobs serve them: one range of
//! bytes, its end clamped to the content.

/// A `Range: bytes=...` over `len` bytes as (start, end inclusive); `None` when it
/// cannot be satisfied (or asks for several ranges, which neither S3 nor the
/// registry serves).
pub fn byte_range(header: &str, len: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?;
    if spec.contains(',') || len == 0 {
        return None;
    }
    let (start, end) = spec.split_once('-')?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok().filter(|s| *s > 0)?;
            (len.saturating_sub(suffix), len - 1)
        }
        (start, "") => (start.parse().ok()?, len - 1),
        (start, end) => (start.parse().ok()?, end.parse::<u64>().ok()?.min(len - 1)),
    };
    (start <= end && start < len).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::byte_range;

    #[test]
    fn ranges_are_read_as_http_says() {
        assert_eq!(byte_range("bytes=0-9", 100), Some((0, 9)));
        assert_eq!(byte_range("bytes=90-", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-10", 100), Some((90, 99)));
        assert_eq!(byte_range("bytes=-300", 100), Some((0, 99)));
        assert_eq!(byte_range("bytes=95-200", 100), Some((95, 99)));
        for bad in [
            "bytes=100-",
            "bytes=5-1",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=-0",
            "bytes=x-1",
        ] {
            assert_eq!(byte_range(bad, 100), None, "{bad}");
        }
        assert_eq!(byte_range("bytes=0-", 0), None);
    }
}
