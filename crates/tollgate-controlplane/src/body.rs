//! The one reader of management-API JSON bodies. Every body, whether decoded whole into
//! a request type or read field by field (`service::budgets::Fields`), goes through
//! [`json`], so a body error always has the same shape: a malformed document is
//! `invalid JSON body: ...`, and a value that does not fit names its field path
//! (`budget.window`, `deployments[1].weight`). Both are 400 `invalid_request`; a body
//! over the size limit is 413 `request_too_large` before it gets here.

use crate::ControlError;
use serde::de::DeserializeOwned;

/// Decodes `body` as `T`, naming the path of the first value that does not fit.
pub(crate) fn json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    if body.is_empty() {
        return Err(ControlError::BadBody("request body must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ControlError::BadBody(format!("invalid JSON body: {inner}"))
        } else {
            ControlError::invalid(path, inner.to_string())
        }
    })?;
    de.end().map_err(|e| ControlError::BadBody(format!("invalid JSON body: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Vec<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        weight: u32,
    }

    #[test]
    fn errors_name_the_field_path_or_the_document() {
        let field = |b: &str| json::<Outer>(b.as_bytes()).unwrap_err();
        let e = field(r#"{"inner": [{"weight": 1}, {"weight": "x"}]}"#);
        assert!(matches!(&e, ControlError::Invalid { field, .. } if field == "inner[1].weight"), "{e}");
        assert!(matches!(field("{"), ControlError::BadBody(m) if m.starts_with("invalid JSON body")));
        assert!(matches!(field(""), ControlError::BadBody(m) if m == "request body must be a JSON object"));
        assert!(matches!(field(r#"{"inner": []} x"#), ControlError::BadBody(_)));
    }
}
