//! Typed identifiers. Cheap to clone (`Arc<str>`), impossible to mix up.

use std::fmt;
use std::sync::Arc;

macro_rules! id_type {
    ($(#[doc = $doc:literal])* $name:ident, $prefix:literal) => {
        $(#[doc = $doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// The prefix of freshly generated ids of this kind (e.g. `key`).
            pub const PREFIX: &'static str = $prefix;

            /// Wraps an existing id (from storage or the wire) without checking its shape.
            pub fn new(id: impl Into<Arc<str>>) -> Self {
                Self(id.into())
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&*self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.into())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s.into())
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(Self(Arc::from(s.as_ref())))
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::openapi::id(crate::openapi::doc_text(&[$($doc),*]), $prefix)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }
    };
}

id_type!(
    /// An organization.
    OrgId, "org");
id_type!(
    /// A team inside an organization.
    TeamId, "team");
id_type!(
    /// A project inside a team.
    ProjectId, "proj");
id_type!(
    /// A virtual key (the record, never the secret).
    KeyId, "key");
id_type!(
    /// A provider credential.
    ProviderId, "prov");
id_type!(
    /// A public model in the catalog.
    ModelId, "model");
id_type!(
    /// A budget.
    BudgetId, "bud");
id_type!(
    /// An admin token (the record, never the secret).
    TokenId, "tok");
id_type!(
    /// One request through the data plane.
    RequestId, "req");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_json_as_plain_strings() {
        let id = KeyId::new("key_abc");
        let json = serde_json_like(&id);
        assert_eq!(json, "key_abc");
        assert_eq!(format!("{id:?}"), "\"key_abc\"");
    }

    fn serde_json_like(id: &KeyId) -> String {
        id.to_string()
    }
}
