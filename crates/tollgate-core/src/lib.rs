//! tollgate-core: the shared vocabulary of tollgate.
//!
//! Owns the small value types every other crate speaks in: [`Money`] (integer
//! nano-dollars, never floats), typed ids, [`ScopeKind`], [`Window`] (calendar-aligned,
//! UTC), [`OnBreach`], [`Timestamp`], alert [`Threshold`]s, the shape of a name
//! ([`check_name`]), and the closed [`ErrorCode`] vocabulary that every crate's error
//! maps into.
//!
//! Does not own: I/O of any kind, HTTP or gRPC mappings of error codes (those live in
//! exactly one place in the data plane and one in the control plane), or policy logic.
//!
//! With the `openapi` feature, each value type also describes itself as an OpenAPI
//! schema (`utoipa::ToSchema`), written beside its serde impl so the two agree.
//!
//! Invariants: money arithmetic is exact (checked i64/i128), and a value of these types
//! can only be built valid (parse, don't validate).
#![forbid(unsafe_code)]

mod error;
mod ids;
mod money;
mod name;
#[cfg(feature = "openapi")]
mod openapi;
mod scope;
mod threshold;
mod timestamp;
mod window;

pub use error::{ErrorCode, ServiceError};
pub use ids::{BudgetId, KeyId, ModelId, OrgId, ProjectId, ProviderId, RequestId, TeamId, TokenId};
pub use money::{Money, MoneyError};
pub use name::{MAX_NAME_LEN, NameError, check_name};
pub use scope::{OnBreach, ParseEnumError, ScopeKind};
pub use threshold::Threshold;
pub use timestamp::{Timestamp, TimestampError};
pub use window::Window;
