//! What a key's allowlist and metadata may hold: the one place these limits are decided,
//! so the control plane refuses at write time exactly what the key model cannot hold.

use tollgate_core::{NameError, check_name};

/// Most patterns in one model allowlist.
pub const MAX_PATTERNS: usize = 256;
/// Most metadata pairs on one key.
pub const MAX_METADATA_ENTRIES: usize = 64;
/// Longest metadata value, in bytes.
pub const MAX_METADATA_VALUE: usize = 1024;

/// Why an allowlist is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AllowlistError {
    /// More than [`MAX_PATTERNS`] patterns.
    #[error("at most {MAX_PATTERNS} entries")]
    TooMany,
    /// A pattern that is not a valid name.
    #[error("{reason}")]
    Pattern {
        /// Its position in the list.
        index: usize,
        /// The rule it breaks.
        reason: NameError,
    },
}

/// Why a key's metadata is refused. Names a metadata name, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// More than [`MAX_METADATA_ENTRIES`] pairs.
    #[error("at most {MAX_METADATA_ENTRIES} entries")]
    TooMany,
    /// A name that is not a valid name.
    #[error("{0}")]
    Name(NameError),
    /// A value longer than [`MAX_METADATA_VALUE`] bytes.
    #[error("at most {MAX_METADATA_VALUE} bytes")]
    Value {
        /// The name whose value is too long.
        name: String,
    },
}

impl tollgate_core::ServiceError for AllowlistError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

impl tollgate_core::ServiceError for MetadataError {
    fn code(&self) -> tollgate_core::ErrorCode {
        tollgate_core::ErrorCode::BadRequest
    }
}

/// Checks a model allowlist: at most [`MAX_PATTERNS`] patterns, each a valid name.
pub fn validate_allowlist(patterns: &[String]) -> Result<(), AllowlistError> {
    if patterns.len() > MAX_PATTERNS {
        return Err(AllowlistError::TooMany);
    }
    for (index, p) in patterns.iter().enumerate() {
        check_name(p).map_err(|reason| AllowlistError::Pattern { index, reason })?;
    }
    Ok(())
}

/// Checks a key's metadata: at most [`MAX_METADATA_ENTRIES`] pairs, names valid, values
/// at most [`MAX_METADATA_VALUE`] bytes.
pub fn validate_metadata<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), MetadataError> {
    if pairs.len() > MAX_METADATA_ENTRIES {
        return Err(MetadataError::TooMany);
    }
    for (k, v) in pairs {
        check_name(k).map_err(MetadataError::Name)?;
        if v.len() > MAX_METADATA_VALUE {
            return Err(MetadataError::Value { name: k.clone() });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn allowlists_are_bounded_and_name_the_bad_pattern() {
        assert_eq!(validate_allowlist(&["gpt-4o*".into()]), Ok(()));
        assert_eq!(validate_allowlist(&vec!["m".to_owned(); MAX_PATTERNS + 1]), Err(AllowlistError::TooMany));
        assert_eq!(
            validate_allowlist(&["ok".into(), "".into()]),
            Err(AllowlistError::Pattern { index: 1, reason: NameError::Empty })
        );
    }

    #[test]
    fn metadata_is_bounded_and_names_the_bad_entry() {
        let m = |pairs: &[(&str, String)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect();
        let ok: BTreeMap<String, String> = m(&[("team", "a".into())]);
        assert_eq!(validate_metadata(ok.iter()), Ok(()));
        let long: BTreeMap<String, String> = m(&[("team", "x".repeat(MAX_METADATA_VALUE + 1))]);
        assert_eq!(validate_metadata(long.iter()), Err(MetadataError::Value { name: "team".into() }));
        let bad: BTreeMap<String, String> = m(&[("a\nb", String::new())]);
        assert_eq!(validate_metadata(bad.iter()), Err(MetadataError::Name(NameError::Control)));
    }
}
