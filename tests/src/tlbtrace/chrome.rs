//! A [`Trace`] as Chrome's Trace Event Format (JSON object form), which
//! ui.perfetto.dev and chrome://tracing open:
//!
//! - one process (`pid` 0, named `tlbkernel`) with one track per CPU
//!   (`tid` = CPU, named `CPU n`, sorted by CPU), declared by metadata
//!   events even for a CPU that made no decision;
//! - one instant event (`ph: "i"`, thread scope) per decision, named by its
//!   reason, category `tlb`, at `ts` = the guest time in µs, with `args`:
//!   `asid`, `range`, `start`/`end` (hex, for address ranges), `pages`,
//!   `ops` (`kind:count,...`), `tlbis`, `reason`, `policy`, `strategy`,
//!   `ipi_targets` (a list of CPUs) and `t_ns`;
//! - `otherData`: the ring size, counter frequency, events and dropped
//!   events (total and per CPU).

use serde_json::{json, Value};

use super::{Range, Trace};

/// The process all tracks belong to.
pub const PID: u32 = 0;

/// The JSON document for `t`.
pub fn json(t: &Trace) -> Value {
    let mut events = vec![json!({
        "name": "process_name", "ph": "M", "pid": PID, "tid": 0,
        "args": { "name": "tlbkernel" },
    })];
    for cpu in 0..t.cpus {
        events.push(json!({
            "name": "thread_name", "ph": "M", "pid": PID, "tid": cpu,
            "args": { "name": format!("CPU {cpu}") },
        }));
        events.push(json!({
            "name": "thread_sort_index", "ph": "M", "pid": PID, "tid": cpu,
            "args": { "sort_index": cpu },
        }));
    }
    for e in &t.events {
        let (start, end) = match e.range {
            Range::Va { start, end } => (json!(format!("{start:#x}")), json!(format!("{end:#x}"))),
            _ => (Value::Null, Value::Null),
        };
        let ipi: Vec<u32> = (0..64).filter(|c| e.ipi.is_some_and(|m| m >> c & 1 == 1)).collect();
        events.push(json!({
            "name": e.reason,
            "cat": "tlb",
            "ph": "i",
            "s": "t",
            "ts": e.t_ns as f64 / 1000.0,
            "pid": PID,
            "tid": e.cpu,
            "args": {
                "asid": e.asid,
                "range": e.range.to_string(),
                "start": start,
                "end": end,
                "pages": e.pages,
                "ops": e.ops_text(),
                "tlbis": e.tlbis(),
                "reason": e.reason,
                "policy": e.policy,
                "strategy": e.strategy,
                "ipi_targets": ipi,
                "t_ns": e.t_ns,
            },
        }));
    }
    json!({
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "source": "tlbkernel trace=tlb",
            "version": t.version,
            "cpus": t.cpus,
            "ring_size": t.size,
            "freq_hz": t.freq_hz,
            "events": t.events.len(),
            "dropped": t.dropped(),
            "dropped_per_cpu": t.dropped_per_cpu,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::super::tests::CONSOLE;
    use super::*;

    #[test]
    fn one_track_per_cpu_and_one_event_per_decision() {
        let t = Trace::parse(CONSOLE).unwrap();
        let text = serde_json::to_string(&json(&t)).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        let events = v["traceEvents"].as_array().unwrap();
        let names: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["name"] == "thread_name")
            .map(|e| (e["tid"].as_u64().unwrap(), e["args"]["name"].as_str().unwrap()))
            .collect();
        assert_eq!(names, [(0, "CPU 0"), (1, "CPU 1")]);
        let decisions: Vec<&Value> = events.iter().filter(|e| e["ph"] == "i").collect();
        assert_eq!(decisions.len(), 4);
        assert!(events.iter().all(|e| e["pid"] == 0), "one process");
        let d = decisions[0];
        assert_eq!((d["name"].as_str(), d["tid"].as_u64(), d["s"].as_str()), (Some("range"), Some(0), Some("t")));
        assert_eq!(d["ts"].as_f64(), Some(133_744.432));
        let a = &d["args"];
        assert_eq!(
            (a["asid"].as_u64(), a["pages"].as_u64(), a["ops"].as_str()),
            (Some(1), Some(512), Some("rvae1is:1"))
        );
        assert_eq!((a["start"].as_str(), a["end"].as_str()), (Some("0x1000000000"), Some("0x1000200000")));
        assert_eq!(
            (a["reason"].as_str(), a["policy"].as_str(), a["strategy"].as_str()),
            (Some("range"), Some("range"), Some("range"))
        );
        assert_eq!(a["ipi_targets"], json!([]));
        let roll = &decisions[3]["args"];
        assert_eq!(
            (roll["asid"].clone(), roll["range"].as_str(), roll["ipi_targets"].clone()),
            (Value::Null, Some("all"), json!([0]))
        );
        assert_eq!(v["otherData"]["dropped_per_cpu"], json!([0, 3]));
        assert_eq!(v["otherData"]["dropped"], 3);
    }

    #[test]
    fn a_cpu_without_decisions_still_has_its_track() {
        let t = Trace { cpus: 4, events: Vec::new(), dropped_per_cpu: vec![0; 4], ..Trace::parse(CONSOLE).unwrap() };
        let v = json(&t);
        let tracks = v["traceEvents"].as_array().unwrap().iter().filter(|e| e["name"] == "thread_name").count();
        assert_eq!(tracks, 4);
    }
}
