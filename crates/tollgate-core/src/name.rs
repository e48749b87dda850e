//! The shape of a name in the configuration (a team, a model, an allowlist pattern, a
//! metadata name): one rule, so the control plane and the domain crates that hold such
//! names refuse the same text.

/// Longest name, in characters.
pub const MAX_NAME_LEN: usize = 128;

/// Why a name is refused. The text is the rule broken, never the name itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// Empty or only whitespace.
    #[error("must not be empty")]
    Empty,
    /// More than [`MAX_NAME_LEN`] characters.
    #[error("must be at most {MAX_NAME_LEN} characters")]
    TooLong,
    /// A control character (a newline, a NUL, ...).
    #[error("must not contain control characters")]
    Control,
}

/// Checks a name: not blank, at most [`MAX_NAME_LEN`] characters, no control characters.
pub fn check_name(value: &str) -> Result<(), NameError> {
    if value.trim().is_empty() {
        return Err(NameError::Empty);
    }
    if value.chars().count() > MAX_NAME_LEN {
        return Err(NameError::TooLong);
    }
    if value.chars().any(char::is_control) {
        return Err(NameError::Control);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_blank_not_too_long_and_printable() {
        assert_eq!(check_name("ok"), Ok(()));
        assert_eq!(check_name(" "), Err(NameError::Empty));
        assert_eq!(check_name(&"x".repeat(MAX_NAME_LEN)), Ok(()));
        assert_eq!(check_name(&"x".repeat(MAX_NAME_LEN + 1)), Err(NameError::TooLong));
        assert_eq!(check_name("a\nb"), Err(NameError::Control));
        assert_eq!(NameError::TooLong.to_string(), "must be at most 128 characters");
    }
}
