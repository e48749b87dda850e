//! OpenAPI schemas of the core value types (feature `openapi`), written next to the
//! types so the document describes exactly what their serde impls read and write.
//!
//! Each type is a named component (`Money`, `Timestamp`, `KeyId`, `Window`, ...), so an
//! API built from them refers to one description instead of repeating it.

use crate::{Money, Threshold, Timestamp};
use std::borrow::Cow;
use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, schema::SchemaType};

/// Joins the lines of a doc comment (as `#[doc = "..."]` literals) into one description.
pub(crate) fn doc_text(lines: &[&str]) -> String {
    lines.iter().map(|l| l.trim()).collect::<Vec<_>>().join(" ")
}

/// A string schema listing its allowed values.
pub(crate) fn string_enum(description: String, values: &[&'static str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .into()
}

/// A string id schema; ids made by the API start with `prefix` and `_`.
pub(crate) fn id(description: String, prefix: &str) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!("{description} Ids the API mints look like `{prefix}_` followed by 32 hex digits.")))
        .examples([format!("{prefix}_0196a1b2c3d4e5f60718293a4b5c6d7e")])
        .into()
}

impl utoipa::PartialSchema for Money {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
            .description(Some(
                "An amount of US dollars, exact to 1e-9 (held as integer nano-dollars). \
                 Responses always give a decimal string with at least two decimals (\"500.00\", \
                 \"0.000125\"). Requests may give a decimal string or a JSON number; a number is \
                 read as the decimal it was written as (0.1 is exactly 0.10), never through \
                 floating point. More than 9 decimal places, or more than about 9.2 billion, is \
                 refused.",
            ))
            .pattern(Some(r"^\s*[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)\s*$"))
            .examples(["500.00"])
            .into()
    }
}

impl utoipa::ToSchema for Money {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Money")
    }
}

impl utoipa::PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some(
                "An instant as RFC 3339. Responses give it in UTC (`Z`), with milliseconds \
                 when they are not zero; requests may use any offset.",
            ))
            .examples(["2026-11-23T15:30:00Z"])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Timestamp")
    }
}

impl utoipa::PartialSchema for Threshold {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::String, Type::Number]))
            .description(Some(
                "A fraction of the limit in (0, 1], exact to 0.001. Responses give a decimal \
                 string (\"0.8\"); requests may give a decimal string or a JSON number.",
            ))
            .pattern(Some(r"^\s*([0-9]*\.[0-9]+|[0-9]+\.?)\s*$"))
            .examples(["0.8"])
            .into()
    }
}

impl utoipa::ToSchema for Threshold {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Threshold")
    }
}
