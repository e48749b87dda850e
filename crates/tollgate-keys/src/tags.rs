//! Key tags: short labels (`env:prod`, `feature:chat`) copied to every ledger entry a key
//! makes, so usage can be filtered and grouped by them. The one place their shape is
//! decided, so the REST and gRPC paths refuse the same things.

/// Most tags on one key.
pub const MAX_TAGS: usize = 32;
/// Longest tag, in bytes (every allowed character is one byte).
pub const MAX_TAG_LEN: usize = 64;

/// Why a list of tags is refused; the text names the offending tag by position, never
/// echoes more than its length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    /// More than [`MAX_TAGS`].
    #[error("at most {MAX_TAGS} tags, got {0}")]
    TooMany(usize),
    /// An empty tag or one longer than [`MAX_TAG_LEN`].
    #[error("tag {index} must be 1 to {MAX_TAG_LEN} characters long")]
    Length {
        /// Its position in the list.
        index: usize,
    },
    /// A character outside `A-Z a-z 0-9 _ . : / -`.
    #[error("tag {index} may only contain letters, digits and _ . : / -")]
    Character {
        /// Its position in the list.
        index: usize,
    },
}

impl tollgate_core::ServiceError for TagError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '/' | '-')
}

/// Checks a key's tags: at most [`MAX_TAGS`], each 1..=[`MAX_TAG_LEN`] characters of
/// `[A-Za-z0-9_.:/-]`. Repeats are allowed here; callers that store tags may dedupe.
pub fn validate_tags(tags: &[String]) -> Result<(), TagError> {
    if tags.len() > MAX_TAGS {
        return Err(TagError::TooMany(tags.len()));
    }
    for (index, t) in tags.iter().enumerate() {
        if t.is_empty() || t.len() > MAX_TAG_LEN {
            return Err(TagError::Length { index });
        }
        if !t.chars().all(allowed) {
            return Err(TagError::Character { index });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn accepts_the_documented_alphabet_and_bounds() {
        assert_eq!(validate_tags(&v(&["env:prod", "feature/chat_v2.1-beta", "A9"])), Ok(()));
        assert_eq!(validate_tags(&v(&[&"x".repeat(MAX_TAG_LEN)])), Ok(()));
        assert_eq!(validate_tags(&vec!["t".to_owned(); MAX_TAGS]), Ok(()));
        assert_eq!(validate_tags(&[]), Ok(()));
    }

    #[test]
    fn refuses_empty_long_odd_and_too_many_tags() {
        assert_eq!(validate_tags(&v(&["ok", ""])), Err(TagError::Length { index: 1 }));
        assert_eq!(validate_tags(&v(&[&"x".repeat(MAX_TAG_LEN + 1)])), Err(TagError::Length { index: 0 }));
        for bad in ["env prod", "env=prod", "é", "a,b", "tag\n"] {
            assert_eq!(validate_tags(&v(&[bad])), Err(TagError::Character { index: 0 }), "{bad:?}");
        }
        assert_eq!(validate_tags(&vec!["t".to_owned(); MAX_TAGS + 1]), Err(TagError::TooMany(MAX_TAGS + 1)));
    }
}
