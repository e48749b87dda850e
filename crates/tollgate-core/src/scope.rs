//! Budget scopes and breach behaviour.

use std::fmt;
use std::str::FromStr;

/// A name that is not one of an enum's accepted spellings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {given:?}; expected one of: {expected}")]
pub struct ParseEnumError {
    /// What was being parsed (`scope`, `window`, ...).
    pub what: &'static str,
    /// What the caller gave.
    pub given: String,
    /// The accepted spellings, comma-separated.
    pub expected: &'static str,
}

macro_rules! str_enum {
    ($(#[doc = $doc:literal])* $name:ident, $what:literal, { $($(#[$vdoc:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vdoc])* $variant),+ }

        impl $name {
            /// Every variant, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire spelling.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }

        impl FromStr for $name {
            type Err = $crate::ParseEnumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::ParseEnumError {
                        what: $what,
                        given: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::openapi::string_enum($crate::openapi::doc_text(&[$($doc),*]), &[$($text),+])
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
pub(crate) use str_enum;

str_enum!(
    /// The kind of entity a budget applies to.
    ScopeKind, "scope", {
        /// The whole organization.
        Organization => "organization",
        /// A team.
        Team => "team",
        /// A project.
        Project => "project",
        /// A principal (a platform's customer or user id).
        Principal => "principal",
        /// One virtual key.
        VirtualKey => "virtual_key",
    }
);

str_enum!(
    /// What happens when a budget would be exceeded.
    OnBreach, "on_breach", {
        /// Refuse the request with 402 before dispatch.
        Block => "block",
        /// Serve it, flag it in a response header and fire the alert.
        Warn => "warn",
        /// Serve it with its output cap lowered to what the budget still affords (at
        /// least the budget's floor of output tokens); below the floor, refuse as `block`.
        /// The counters enforce it exactly like `block`.
        Clamp => "clamp",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_names_round_trip_and_unknown_names_are_explained() {
        for s in ScopeKind::ALL {
            assert_eq!(s.as_str().parse::<ScopeKind>(), Ok(*s));
        }
        let err = "tenant".parse::<ScopeKind>().unwrap_err();
        assert!(err.to_string().contains("virtual_key"), "{err}");
    }
}
