//! A small explicit-state model checker and a seeded random walker over any
//! [`System`]: a cloneable, hashable state with enabled actions.
//!
//! `explore` is a depth-first search that visits every state reachable from
//! the initial one (states whose `expand` is false are checked but not
//! expanded, like TLA+'s `CONSTRAINT`), remembers visited states by a 128-bit
//! fingerprint, and stops at the first invariant violation with the action
//! trace that leads to it. Every interleaving of actions is covered because
//! every enabled action of every state is taken.
#![forbid(unsafe_code)]

use core::fmt::{self, Debug};
use core::hash::{BuildHasherDefault, Hash, Hasher};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::rng::Rng;
use super::violation::Violation;

pub trait System: Clone + Hash {
    type Action: Clone + Debug;
    /// Push the actions enabled in this state.
    fn actions(&self, out: &mut Vec<Self::Action>);
    /// Take `a`, then check the invariants in the new state.
    fn apply(&mut self, a: &Self::Action) -> Result<(), Violation>;
    /// The invariants of the initial state.
    fn check(&self) -> Result<(), Violation>;
    /// False for states beyond the search bound: checked, not expanded.
    fn expand(&self) -> bool {
        true
    }
    /// One line about the state, for traces.
    fn summary(&self) -> String;
    /// Relative probability of `a` in a random walk (the exhaustive search
    /// ignores it).
    fn weight(&self, _a: &Self::Action) -> u64 {
        1
    }
}

/// How a search went.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Distinct states reached (and checked).
    pub states: u64,
    /// Actions taken, i.e. edges of the state graph explored.
    pub transitions: u64,
    /// States at the bound, not expanded.
    pub bounded: u64,
    /// Deepest trace explored.
    pub max_depth: usize,
    pub elapsed: Duration,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} states, {} transitions, {} at the bound, depth {}, {:.2?}",
            self.states, self.transitions, self.bounded, self.max_depth, self.elapsed
        )
    }
}

/// A violation and the actions from the initial state that reach it.
#[derive(Clone, Debug)]
pub struct Counterexample<A> {
    pub trace: Vec<A>,
    pub violation: Violation,
}

impl<A: Clone + Debug> Counterexample<A> {
    /// The trace replayed from `init`, one line per action with the state
    /// after it (the last `max_lines` only).
    pub fn render<S: System<Action = A>>(&self, init: &S, max_lines: usize) -> String {
        let mut s = init.clone();
        let mut lines = vec![format!("   init: {}", s.summary())];
        for (i, a) in self.trace.iter().enumerate() {
            let r = s.apply(a);
            lines.push(format!("{i:>4} {a:?}\n        -> {}", s.summary()));
            if let Err(v) = r {
                lines.push(format!("        !! {v}"));
                break;
            }
        }
        let skip = lines.len().saturating_sub(max_lines);
        let mut out = String::new();
        if skip > 0 {
            out += &format!("   ... {skip} earlier steps\n");
        }
        out += &lines[skip..].join("\n");
        out
    }
}

/// A 128-bit fingerprint hasher: two independent multiply-xor lanes per
/// word, mixed at the end. Cheap per word because the search hashes every
/// state it reaches, in debug builds too.
struct Fingerprint(u64, u64);

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for Fingerprint {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ x).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (self.0 >> 29);
        self.1 = (self.1 ^ !x).wrapping_mul(0xd6e8_feb8_6659_fd93) ^ (self.1 >> 31);
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(x as u64)
    }
    fn write_u16(&mut self, x: u16) {
        self.write_u64(x as u64)
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(x as u64)
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64)
    }
    fn write_isize(&mut self, x: isize) {
        self.write_u64(x as u64)
    }
    fn finish(&self) -> u64 {
        mix(self.0)
    }
}

/// The visited set's hasher: the keys are fingerprints already.
#[derive(Default)]
struct Identity(u64);

impl Hasher for Identity {
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u128 keys")
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

fn fingerprint<T: Hash>(t: &T) -> u128 {
    let mut h = Fingerprint(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
    t.hash(&mut h);
    ((mix(h.0) as u128) << 64) | mix(h.1 ^ 0x0370_7344_a409_3822) as u128
}

/// Visit every state reachable from `init`. Gives up (panics) past
/// `max_states`, so a bound that is too loose fails loudly instead of
/// running for hours.
pub fn explore<S: System>(init: S, max_states: u64) -> Result<Report, (Report, Counterexample<S::Action>)> {
    struct Frame<S: System> {
        state: S,
        actions: Vec<S::Action>,
        next: usize,
    }
    let start = Instant::now();
    let mut report = Report::default();
    let mut seen: HashSet<u128, BuildHasherDefault<Identity>> = HashSet::default();
    let fail = |report: &mut Report, trace, violation| {
        report.elapsed = start.elapsed();
        Err((core::mem::take(report), Counterexample { trace, violation }))
    };
    if let Err(v) = init.check() {
        return fail(&mut report, Vec::new(), v);
    }
    seen.insert(fingerprint(&init));
    report.states = 1;
    let mut stack: Vec<Frame<S>> = Vec::new();
    let mut actions = Vec::new();
    init.actions(&mut actions);
    stack.push(Frame { state: init, actions, next: 0 });
    while let Some(top) = stack.last_mut() {
        if top.next == top.actions.len() {
            stack.pop();
            continue;
        }
        let action = top.actions[top.next].clone();
        top.next += 1;
        let mut s = top.state.clone();
        report.transitions += 1;
        let res = s.apply(&action);
        if let Err(v) = res {
            // Each frame's last taken action leads to the next frame; the
            // top's is `action`.
            let trace = stack.iter().map(|f| f.actions[f.next - 1].clone()).collect();
            return fail(&mut report, trace, v);
        }
        if !seen.insert(fingerprint(&s)) {
            continue;
        }
        report.states += 1;
        assert!(
            report.states <= max_states,
            "state space larger than the bound of {max_states} states: tighten the configuration"
        );
        if !s.expand() {
            report.bounded += 1;
            continue;
        }
        let mut actions = Vec::new();
        s.actions(&mut actions);
        stack.push(Frame { state: s, actions, next: 0 });
        report.max_depth = report.max_depth.max(stack.len() - 1);
    }
    report.elapsed = start.elapsed();
    Ok(report)
}

/// Take `steps` random enabled actions (by `System::weight`) from `init`,
/// seeded. When
/// no action is enabled (or the bound is reached) the walk restarts from
/// `init`. Returns the number of restarts.
pub fn random_walk<S: System>(init: &S, seed: u64, steps: usize) -> Result<u64, Counterexample<S::Action>> {
    let mut rng = Rng::new(seed);
    let mut s = init.clone();
    let mut trace = Vec::new();
    let mut restarts = 0;
    let mut actions = Vec::new();
    init.check().map_err(|violation| Counterexample { trace: Vec::new(), violation })?;
    for _ in 0..steps {
        actions.clear();
        if s.expand() {
            s.actions(&mut actions);
        }
        if actions.is_empty() {
            s = init.clone();
            trace.clear();
            restarts += 1;
            continue;
        }
        let total: u64 = actions.iter().map(|a| s.weight(a)).sum();
        let mut pick = rng.below(total);
        let i = actions.iter().position(|a| {
            let w = s.weight(a);
            let hit = pick < w;
            pick = pick.saturating_sub(w);
            hit
        });
        let a = actions.swap_remove(i.expect("pick < total"));
        trace.push(a.clone());
        if let Err(violation) = s.apply(&a) {
            return Err(Counterexample { trace, violation });
        }
    }
    Ok(restarts)
}
