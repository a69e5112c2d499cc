//! Scenarios: what a run is made of (the TOML schema), and the runner that makes it happen with
//! real relays, real traffic and a real tap.

pub mod attack;
pub mod dane;
pub mod dns;
pub mod error;
pub mod inject;
pub mod interrupt;
mod locate;
pub mod mta_sts;
pub mod netns;
pub mod pki;
pub mod progress;
pub mod provenance;
pub mod recorder;
mod relay_args;
pub mod run_dir;
pub mod runner;
pub mod schema;
pub mod session_merge;
pub mod shadow;
pub mod submission;
pub mod sweep;
pub mod traffic;

pub use error::{DnsError, NetnsError, PkiError, ScenarioError, ShadowError, SubmissionError, TrafficError};
pub use runner::{RunOptions, RunOutcome, run};
pub use schema::Scenario;

/// The built-in default scenario, also at `scenarios/default.toml`.
pub const DEFAULT_SCENARIO: &str = include_str!("../default.toml");
