//! Cistern's API: the Fluid custom resources (`data.fluid.io/v1alpha1`), quantity parsing,
//! loading of multi-document YAML, secrets that never print, and validation into a plan.

pub mod crds;
pub mod juicefs;
pub mod load;
pub mod names;
pub mod plan;
pub mod quantity;
pub mod runtime_types;
pub mod runtime_view;
pub mod secret;
pub mod types;

pub use load::{LoadError, Manifest, Runtime};
pub use plan::{DatasetPlan, Medium, MountPlan, Scheme, TierPlan};
pub use secret::{SecretStore, SecretValue};
pub use runtime_types::*;
pub use runtime_view::{ComponentSpec, FuseSpec, RuntimeSpec};
pub use types::*;
