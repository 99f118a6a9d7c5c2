//! TLB maintenance: operations as data, their counters, the range encoder,
//! the flush policy and the decision trace.

pub mod errata;
pub mod op;
pub mod stats;

pub use errata::{RepeatChoice, RepeatTlbi};
pub use op::{OpKind, Scope, TlbiOp};
pub use stats::{Event, TlbCounts, TlbStats, TLB_STATS};
pub mod policy;
pub mod range;
pub mod trace;
pub use policy::{FlushPlan, FlushRequest, FlushRequestError, FlushStrategy, TlbFeatures};
pub use policy::{PolicyParams, RangePolicy};
