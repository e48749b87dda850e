//! tollgate-proto: the control plane's gRPC wire types and their conversions.
//!
//! Owns the code generated from `proto/tollgate/control/v1/control.proto` (config
//! distribution via `ConfigService.Watch`, and `AdminService`), redacted `Debug` for the
//! messages that carry secrets, the change between two snapshots that `Watch` sends
//! instead of a whole one ([`diff()`]), and — behind the `convert` feature — the
//! conversions from wire messages to the domain types the planes work with (`convert`),
//! each refusal returned as a `convert::Rejected`.
//!
//! API boundary: without `convert` this crate is only the generated types, so a pure
//! gRPC client (`tollctl`) does not pull the domain crates nor what they bring (Redis,
//! tiktoken, hyper-rustls). Conversions live here, not in the clients, so there is one
//! per wire type.
//!
//! Does not own: the services' behaviour (control plane), or how a gateway assembles and
//! swaps its snapshot (data plane).
//!
//! Invariant: no `Debug` output of a generated message prints a provider credential,
//! the key pepper or a key secret.
#![forbid(unsafe_code)]
// Generated code: its items are documented by the .proto comments where present.
#![allow(missing_docs, unreachable_pub)]

#[cfg(feature = "convert")]
pub mod convert;
mod diff;

pub use diff::diff;

/// `tollgate.control.v1`.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::unwrap_used, clippy::expect_used)]
    tonic::include_proto!("tollgate.control.v1");

    use std::fmt;

    impl fmt::Debug for Snapshot {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Snapshot")
                .field("revision", &self.revision)
                .field("key_pepper", &"<redacted>")
                .field("providers", &self.providers)
                .field("models", &self.models)
                .field("keys", &self.keys.len())
                .field("budgets", &self.budgets.len())
                .field("aliases", &self.aliases.len())
                .field("routing_policies", &self.routing_policies.len())
                .finish()
        }
    }

    impl fmt::Debug for Provider {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("Provider")
                .field("id", &self.id)
                .field("name", &self.name)
                .field("kind", &self.kind)
                .field("base_url", &self.base_url)
                .field("api_key", &"<redacted>")
                .finish_non_exhaustive()
        }
    }

    impl fmt::Debug for CreateKeyResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateKeyResponse").field("key", &self.key).field("secret", &"<redacted>").finish()
        }
    }

    impl fmt::Debug for RotateKeyResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("RotateKeyResponse").field("key", &self.key).field("secret", &"<redacted>").finish()
        }
    }

    impl fmt::Debug for CreateTokenResponse {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateTokenResponse").field("token", &self.token).field("secret", &"<redacted>").finish()
        }
    }

    impl fmt::Debug for CreateProviderRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("CreateProviderRequest")
                .field("name", &self.name)
                .field("kind", &self.kind)
                .field("base_url", &self.base_url)
                .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
                .field("rpm", &self.rpm)
                .field("tpm", &self.tpm)
                .field("priority", &self.priority)
                .field("extra_json", &self.extra_json)
                .finish()
        }
    }

    impl fmt::Debug for UpdateProviderRequest {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("UpdateProviderRequest")
                .field("provider", &self.provider)
                .field("base_url", &self.base_url)
                .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
                .field("rpm", &self.rpm)
                .field("clear_rpm", &self.clear_rpm)
                .field("tpm", &self.tpm)
                .field("clear_tpm", &self.clear_tpm)
                .field("priority", &self.priority)
                .field("extra_json", &self.extra_json)
                .finish()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn debug_output_never_contains_secrets() {
        let snap = v1::Snapshot {
            revision: 3,
            key_pepper: b"PEPPER-SECRET".to_vec(),
            providers: vec![v1::Provider { api_key: "sk-PROVIDER-SECRET".into(), ..Default::default() }],
            ..Default::default()
        };
        let text = format!("{snap:?}");
        assert!(!text.contains("SECRET") && !text.contains("80, 69, 80"), "{text}");
        let resp = v1::CreateKeyResponse { key: None, secret: "tg_SECRET".into() };
        assert!(!format!("{resp:?}").contains("SECRET"));
        let resp = v1::RotateKeyResponse { key: None, secret: "tg_SECRET".into() };
        assert!(!format!("{resp:?}").contains("SECRET"));
        let resp = v1::CreateTokenResponse { token: None, secret: "tga_SECRET".into() };
        assert!(!format!("{resp:?}").contains("SECRET"));
        let req = v1::CreateProviderRequest { api_key: Some("sk-SECRET".into()), ..Default::default() };
        assert!(!format!("{req:?}").contains("SECRET"));
        let req = v1::UpdateProviderRequest { api_key: Some("sk-SECRET".into()), ..Default::default() };
        assert!(!format!("{req:?}").contains("SECRET"));
    }
}
